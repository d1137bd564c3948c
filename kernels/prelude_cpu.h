// Plain C++ spellings: one thread per group (NT = 1), so SYNC() has nothing to wait for. Used
// by tests/test_kernels.py to run the shared body on a CPU through g++.
#define TID 0
#define GROUP group  // the caller loops `group` over the threadgroups
#define SHARED
#define SYNC()
#define EXP(x) std::exp(x)
#define TANH(x) std::tanh(x)
#define SYNC_DEVICE()
#define NEG_INF (-INFINITY)
