// C entry points of an XLA AOT-compiled model, for ctypes (see ../aot.py, AotModel).
//
// The build compiles this file once per model with -include of the generated
// model.h, -DXLA_AOT_CLASS=<generated class> and -DXLA_AOT_RESULT_SIZES=<initializer
// list of the generated result sizes>: tfcompile's header exposes result sizes
// only as per-result methods, so aot.py spells them out for this file.
//
// Threading: a model compiled with multithreaded=False calls XLA's single-threaded
// Eigen kernels and never touches a thread pool, so it runs on the caller's thread.
// A model compiled with multithreaded=True calls the Eigen kernels that split work
// over `run_options.intra_op_thread_pool()`: model_create gives it a pool of
// `num_threads` threads (at least 1), owned by the handle.

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#ifndef XLA_AOT_CLASS
#error "Build with -DXLA_AOT_CLASS=<tfcompile cpp_class> and -include model.h"
#endif

#ifndef XLA_AOT_MULTITHREADED
#define XLA_AOT_MULTITHREADED 0
#endif

#if XLA_AOT_MULTITHREADED
// Eigen's Tensor headers take seconds to compile: only thread-pool builds need them.
#define EIGEN_USE_THREADS
#include "unsupported/Eigen/CXX11/Tensor"
#include "unsupported/Eigen/CXX11/ThreadPool"
#endif

#define XLA_AOT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

struct ModelHandle {
#if XLA_AOT_MULTITHREADED
  std::unique_ptr<Eigen::ThreadPool> pool;
  std::unique_ptr<Eigen::ThreadPoolDevice> device;
#endif
  std::unique_ptr<XLA_AOT_CLASS> computation;
};

// Result sizes in bytes, indexed by result position (see the header comment).
int64_t ResultSize(const XLA_AOT_CLASS& computation, int index) {
  const int64_t sizes[] = XLA_AOT_RESULT_SIZES(computation);
  if (index < 0 || index >= static_cast<int>(XLA_AOT_CLASS::kNumResults)) return -1;
  return sizes[index];
}

// One instance answers size queries without a handle; arg sizes are static already.
const XLA_AOT_CLASS& SizeOracle() {
  static const XLA_AOT_CLASS* oracle = new XLA_AOT_CLASS();
  return *oracle;
}

}  // namespace

XLA_AOT_EXPORT int model_num_args() { return static_cast<int>(XLA_AOT_CLASS::kNumArgs); }

XLA_AOT_EXPORT int model_num_results() { return static_cast<int>(XLA_AOT_CLASS::kNumResults); }

XLA_AOT_EXPORT int model_multithreaded() { return XLA_AOT_MULTITHREADED; }

// Size in bytes of positional argument `index`, or -1 when out of range.
XLA_AOT_EXPORT int64_t model_arg_size(int index) {
  if (index < 0 || index >= static_cast<int>(XLA_AOT_CLASS::kNumArgs)) return -1;
  return XLA_AOT_CLASS::ArgSize(index);
}

// Size in bytes of positional result `index`, or -1 when out of range.
XLA_AOT_EXPORT int64_t model_result_size(int index) {
  return ResultSize(SizeOracle(), index);
}

// A handle owning the computation's buffers (and its thread pool when multithreaded).
// Returns nullptr when allocation fails. A handle runs one call at a time.
XLA_AOT_EXPORT void* model_create(int num_threads) {
  auto* handle = new (std::nothrow) ModelHandle();
  if (handle == nullptr) return nullptr;
  handle->computation.reset(new (std::nothrow) XLA_AOT_CLASS());
  if (handle->computation == nullptr) {
    delete handle;
    return nullptr;
  }
#if XLA_AOT_MULTITHREADED
  const int threads = num_threads < 1 ? 1 : num_threads;
  handle->pool.reset(new Eigen::ThreadPool(threads));
  handle->device.reset(new Eigen::ThreadPoolDevice(handle->pool.get(), threads));
  handle->computation->set_thread_pool(handle->device.get());
#else
  (void)num_threads;  // Single-threaded kernels: the call runs on the caller's thread.
#endif
  return handle;
}

XLA_AOT_EXPORT void model_destroy(void* handle) { delete static_cast<ModelHandle*>(handle); }

// Copies `args[i]` (model_arg_size(i) bytes each) into the computation's aligned
// buffers, runs it, and copies each result into `results[i]` (model_result_size(i)
// bytes). Returns 0 on success, 1 when XLA reports a failure.
XLA_AOT_EXPORT int model_run(void* handle, const void* const* args, void* const* results) {
  XLA_AOT_CLASS& computation = *static_cast<ModelHandle*>(handle)->computation;
  // Copying instead of set_arg_data: XLA requires MinAlign()-aligned argument
  // buffers, which a caller's (numpy) memory does not promise.
  for (int i = 0; i < static_cast<int>(XLA_AOT_CLASS::kNumArgs); ++i) {
    std::memcpy(computation.arg_data(i), args[i], XLA_AOT_CLASS::ArgSize(i));
  }
  if (!computation.Run()) return 1;
  for (int i = 0; i < static_cast<int>(XLA_AOT_CLASS::kNumResults); ++i) {
    std::memcpy(results[i], computation.result_data(i), ResultSize(computation, i));
  }
  return 0;
}
