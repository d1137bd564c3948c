// Metal spellings for kernels/*.body (mx.fast.metal_kernel declares the thread attributes
// because their names appear here, in the kernel source).
#define TID thread_position_in_threadgroup.x
#define GROUP threadgroup_position_in_grid.x
#define SHARED threadgroup
#define SYNC() threadgroup_barrier(mem_flags::mem_threadgroup)
#define EXP(x) metal::precise::exp(x)
#define TANH(x) metal::precise::tanh(x)
#define SYNC_DEVICE() threadgroup_barrier(mem_flags::mem_device)
#define NEG_INF (-INFINITY)
