// CUDA spellings for kernels/*.body (mx.fast.cuda_kernel: template ints are constexpr, T is a
// type alias; the grid is given in threads and rounded up to whole blocks).
#define TID threadIdx.x
#define GROUP blockIdx.x
#define SHARED __shared__
#define SYNC() __syncthreads()
#define EXP(x) expf(x)
#define TANH(x) tanhf(x)
#define SYNC_DEVICE() __syncthreads()
#define NEG_INF __int_as_float((int)0xff800000u)
