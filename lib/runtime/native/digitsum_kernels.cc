// digitsum's own TensorFlow CPU kernels, built by `deno task install-native` against the same
// TensorFlow C library as tfjs-node's addon and loaded into the process after it
// (lib/runtime/native_kernels.ts). Loading the library registers three ops with TensorFlow's global
// op and kernel registries, so tfjs-node runs them like any built-in op.
//
// Each replaces a sequence that TensorFlow runs slowly on 2 cores, with the same float32 results
// bit for bit (tests/native_test.ts compares them with TensorFlow's own ops):
//
// - DigitsumMaxPool2x2Grad(x, dy) -> dx: the gradient of a 2 x 2, stride 2 max pool over NHWC
//   input with even height and width. Like TensorFlow's MaxPoolGrad, each window's gradient goes to
//   its first maximum in row-major order, added to a zero. One pass, no argmax tensor: about a
//   fifth of TensorFlow's time for the study CNN's first pooling layer.
// - DigitsumTorchAdam(p, g, m, v, hyper) -> (p', m', v'): digitsum's TorchAdam update, one pass
//   instead of thirteen element-wise ops, each float32 operation rounded where TensorFlow rounds:
//     m' = m * beta1 + g * c1
//     v' = v * beta2 + (g * g) * c2
//     p' = p - (m' / (sqrt(v') / sqrt_bc2 + eps)) * step_size
//   hyper = [beta1, c1, beta2, c2, sqrt_bc2, eps, step_size] as float32. Built with
//   -ffp-contract=off so that no multiply and add fuse into one rounding.
// - DigitsumBiasAddRelu(x, bias) -> relu(x + bias) over the last axis, in one pass instead of
//   tfjs-node's broadcasting Add and a Relu (inference through a fused conv layer). ReLU as
//   TensorFlow's Relu gives it here: positive values and NaN pass, everything else (-0 too)
//   becomes +0.
//
// Work is split over `digitsum_kernels_set_threads(n)` threads; every element is computed the
// same way whatever the split, so the thread count never changes a result.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// The part of TensorFlow's stable C API used here (tensorflow/c/kernels.h, ops.h, tf_tensor.h,
// tf_status.h), all exported by libtensorflow_framework.so.2. Declared here rather than included:
// kernels.h pulls in TSL and StreamExecutor headers that the staged C library does not carry.
extern "C" {
typedef struct TF_Status TF_Status;
typedef struct TF_Tensor TF_Tensor;
typedef struct TF_OpKernelContext TF_OpKernelContext;
typedef struct TF_OpKernelConstruction TF_OpKernelConstruction;
typedef struct TF_KernelBuilder TF_KernelBuilder;
typedef struct TF_OpDefinitionBuilder TF_OpDefinitionBuilder;
typedef struct TF_ShapeInferenceContext TF_ShapeInferenceContext;
typedef enum TF_DataType { TF_FLOAT = 1 } TF_DataType;
typedef enum TF_Code { TF_OK = 0, TF_INVALID_ARGUMENT = 3 } TF_Code;

TF_Status* TF_NewStatus(void);
void TF_DeleteStatus(TF_Status*);
void TF_SetStatus(TF_Status*, TF_Code, const char*);
TF_Code TF_GetCode(const TF_Status*);
TF_DataType TF_TensorType(const TF_Tensor*);
int TF_NumDims(const TF_Tensor*);
int64_t TF_Dim(const TF_Tensor*, int);
size_t TF_TensorByteSize(const TF_Tensor*);
int64_t TF_TensorElementCount(const TF_Tensor*);
void* TF_TensorData(const TF_Tensor*);
void TF_DeleteTensor(TF_Tensor*);
void TF_GetInput(TF_OpKernelContext*, int, TF_Tensor**, TF_Status*);
TF_Tensor* TF_AllocateOutput(TF_OpKernelContext*, int, TF_DataType, const int64_t*, int, size_t,
                             TF_Status*);
void TF_OpKernelContext_Failure(TF_OpKernelContext*, TF_Status*);
TF_OpDefinitionBuilder* TF_NewOpDefinitionBuilder(const char*);
void TF_OpDefinitionBuilderAddInput(TF_OpDefinitionBuilder*, const char*);
void TF_OpDefinitionBuilderAddOutput(TF_OpDefinitionBuilder*, const char*);
void TF_OpDefinitionBuilderSetShapeInferenceFunction(
    TF_OpDefinitionBuilder*, void (*)(TF_ShapeInferenceContext*, TF_Status*));
void TF_RegisterOpDefinition(TF_OpDefinitionBuilder*, TF_Status*);
TF_KernelBuilder* TF_NewKernelBuilder(const char*, const char*,
                                      void* (*)(TF_OpKernelConstruction*),
                                      void (*)(void*, TF_OpKernelContext*), void (*)(void*));
void TF_RegisterKernelBuilder(const char*, TF_KernelBuilder*, TF_Status*);
}

namespace {

int g_threads = 1;

// Runs fn(begin, end) over [0, n) in up to g_threads contiguous parts (one when n is small).
template <typename Fn>
void ParallelFor(int64_t n, int64_t min_per_thread, Fn fn) {
  int64_t parts = std::min<int64_t>(g_threads, std::max<int64_t>(1, n / min_per_thread));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> workers;
  int64_t step = (n + parts - 1) / parts;
  for (int64_t p = 1; p < parts; ++p) {
    int64_t begin = p * step, end = std::min(n, begin + step);
    if (begin < end) workers.emplace_back(fn, begin, end);
  }
  fn(0, std::min(n, step));
  for (auto& w : workers) w.join();
}

void Fail(TF_OpKernelContext* ctx, TF_Code code, const char* message) {
  TF_Status* status = TF_NewStatus();
  TF_SetStatus(status, code, message);
  TF_OpKernelContext_Failure(ctx, status);
  TF_DeleteStatus(status);
}

// Fetches input i as a float32 tensor, or reports the failure and returns nullptr.
TF_Tensor* FloatInput(TF_OpKernelContext* ctx, int i) {
  TF_Status* status = TF_NewStatus();
  TF_Tensor* t = nullptr;
  TF_GetInput(ctx, i, &t, status);
  if (TF_GetCode(status) != TF_OK) {
    TF_OpKernelContext_Failure(ctx, status);
    TF_DeleteStatus(status);
    return nullptr;
  }
  TF_DeleteStatus(status);
  if (TF_TensorType(t) != TF_FLOAT) {
    TF_DeleteTensor(t);
    Fail(ctx, TF_INVALID_ARGUMENT, "digitsum kernels take float32 tensors only");
    return nullptr;
  }
  return t;
}

// An op's first `count` inputs as float32 tensors, released when it goes out of scope; `ok` is
// false (and the failure reported) when one is missing or of another dtype.
struct Inputs {
  Inputs(TF_OpKernelContext* ctx, int count) {
    for (int i = 0; i < count && ok; ++i) {
      TF_Tensor* t = FloatInput(ctx, i);
      if (t) tensors.push_back(t);
      else ok = false;
    }
  }
  ~Inputs() {
    for (TF_Tensor* t : tensors) TF_DeleteTensor(t);
  }
  TF_Tensor* operator[](int i) const { return tensors[i]; }
  std::vector<TF_Tensor*> tensors;
  bool ok = true;
};

bool SameShape(TF_Tensor* a, TF_Tensor* b) {
  if (TF_NumDims(a) != TF_NumDims(b)) return false;
  for (int d = 0; d < TF_NumDims(a); ++d) {
    if (TF_Dim(a, d) != TF_Dim(b, d)) return false;
  }
  return true;
}

TF_Tensor* AllocateLike(TF_OpKernelContext* ctx, int index, TF_Tensor* like) {
  std::vector<int64_t> dims(TF_NumDims(like));
  for (size_t d = 0; d < dims.size(); ++d) dims[d] = TF_Dim(like, d);
  TF_Status* status = TF_NewStatus();
  TF_Tensor* out = TF_AllocateOutput(ctx, index, TF_FLOAT, dims.data(), static_cast<int>(dims.size()),
                                     TF_TensorByteSize(like), status);
  if (TF_GetCode(status) != TF_OK) {
    TF_OpKernelContext_Failure(ctx, status);
    out = nullptr;
  }
  TF_DeleteStatus(status);
  return out;
}

void* NoState(TF_OpKernelConstruction*) { return nullptr; }
void NoDelete(void*) {}

void MaxPool2x2GradCompute(void*, TF_OpKernelContext* ctx) {
  Inputs in(ctx, 2);
  if (!in.ok) return;
  TF_Tensor* x = in[0];
  TF_Tensor* dy = in[1];
  const bool ok = TF_NumDims(x) == 4 && TF_NumDims(dy) == 4 && TF_Dim(x, 0) == TF_Dim(dy, 0) &&
                  TF_Dim(x, 1) % 2 == 0 && TF_Dim(x, 2) % 2 == 0 &&
                  TF_Dim(dy, 1) * 2 == TF_Dim(x, 1) && TF_Dim(dy, 2) * 2 == TF_Dim(x, 2) &&
                  TF_Dim(x, 3) == TF_Dim(dy, 3);
  if (!ok) {
    Fail(ctx, TF_INVALID_ARGUMENT,
         "DigitsumMaxPool2x2Grad: x must be [b, 2h, 2w, c] and dy [b, h, w, c]");
  } else if (TF_Tensor* dx = AllocateLike(ctx, 0, x)) {
    const int64_t rows = TF_Dim(dy, 0) * TF_Dim(dy, 1);  // output rows over the whole batch
    const int64_t out_w = TF_Dim(dy, 2), c = TF_Dim(x, 3);
    const int64_t in_row = 2 * out_w * c;  // floats in one input row
    const float* xs = static_cast<const float*>(TF_TensorData(x));
    const float* dys = static_cast<const float*>(TF_TensorData(dy));
    float* dxs = static_cast<float*>(TF_TensorData(dx));
    ParallelFor(rows, 8, [=](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* top = xs + 2 * r * in_row;  // input rows 2r and 2r + 1 of the same image
        const float* bottom = top + in_row;
        float* dtop = dxs + 2 * r * in_row;
        float* dbottom = dtop + in_row;
        const float* g = dys + r * out_w * c;
        for (int64_t j = 0; j < out_w; ++j) {
          const int64_t left = 2 * j * c, right = left + c;
          for (int64_t k = 0; k < c; ++k) {
            // First maximum in row-major order: a later value must be strictly greater.
            // Written without branches so that the compiler vectorizes it over channels.
            const float a = top[left + k], b = top[right + k];
            const float c2 = bottom[left + k], d = bottom[right + k];
            const bool to_b = a < b;
            const float ab = to_b ? b : a;
            const bool to_c = ab < c2;
            const float abc = to_c ? c2 : ab;
            const bool to_d = abc < d;
            const float grad = 0.0f + g[j * c + k];
            dtop[left + k] = (to_b || to_c || to_d) ? 0.0f : grad;
            dtop[right + k] = (to_b && !to_c && !to_d) ? grad : 0.0f;
            dbottom[left + k] = (to_c && !to_d) ? grad : 0.0f;
            dbottom[right + k] = to_d ? grad : 0.0f;
          }
        }
      }
    });
    TF_DeleteTensor(dx);
  }
}

void TorchAdamCompute(void*, TF_OpKernelContext* ctx) {
  Inputs in(ctx, 5);
  bool ok = in.ok;
  if (ok && !(SameShape(in[0], in[1]) && SameShape(in[0], in[2]) && SameShape(in[0], in[3]) &&
              TF_TensorElementCount(in[4]) == 7)) {
    Fail(ctx, TF_INVALID_ARGUMENT,
         "DigitsumTorchAdam: p, g, m and v must have one shape and hyper 7 values");
    ok = false;
  }
  TF_Tensor* out[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < 3 && ok; ++i) ok = (out[i] = AllocateLike(ctx, i, in[0])) != nullptr;
  if (ok) {
    const float* h = static_cast<const float*>(TF_TensorData(in[4]));
    const float beta1 = h[0], c1 = h[1], beta2 = h[2], c2 = h[3], sqrt_bc2 = h[4], eps = h[5],
                step_size = h[6];
    const float* p = static_cast<const float*>(TF_TensorData(in[0]));
    const float* g = static_cast<const float*>(TF_TensorData(in[1]));
    const float* m = static_cast<const float*>(TF_TensorData(in[2]));
    const float* v = static_cast<const float*>(TF_TensorData(in[3]));
    float* p2 = static_cast<float*>(TF_TensorData(out[0]));
    float* m2 = static_cast<float*>(TF_TensorData(out[1]));
    float* v2 = static_cast<float*>(TF_TensorData(out[2]));
    ParallelFor(TF_TensorElementCount(in[0]), 1 << 16, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float gi = g[i];
        const float mi = m[i] * beta1 + gi * c1;
        const float vi = v[i] * beta2 + (gi * gi) * c2;
        const float denom = std::sqrt(vi) / sqrt_bc2 + eps;
        p2[i] = p[i] - (mi / denom) * step_size;
        m2[i] = mi;
        v2[i] = vi;
      }
    });
  }
  for (TF_Tensor* t : out) {
    if (t) TF_DeleteTensor(t);
  }
}

void BiasAddReluCompute(void*, TF_OpKernelContext* ctx) {
  Inputs in(ctx, 2);
  if (!in.ok) return;
  TF_Tensor* x = in[0];
  TF_Tensor* bias = in[1];
  const int rank = TF_NumDims(x);
  if (rank < 1 || TF_NumDims(bias) != 1 || TF_Dim(bias, 0) != TF_Dim(x, rank - 1) ||
      TF_Dim(bias, 0) == 0) {
    Fail(ctx, TF_INVALID_ARGUMENT,
         "DigitsumBiasAddRelu: bias must be 1-D with as many values as x's last axis");
  } else if (TF_Tensor* y = AllocateLike(ctx, 0, x)) {
    const int64_t c = TF_Dim(bias, 0);
    const int64_t rows = TF_TensorElementCount(x) / c;
    const float* xs = static_cast<const float*>(TF_TensorData(x));
    const float* b = static_cast<const float*>(TF_TensorData(bias));
    float* ys = static_cast<float*>(TF_TensorData(y));
    ParallelFor(rows, 4096, [=](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* in = xs + r * c;
        float* out = ys + r * c;
        for (int64_t k = 0; k < c; ++k) {
          const float v = in[k] + b[k];
          out[k] = v > 0.0f ? v : (v == v ? 0.0f : v);
        }
      }
    });
    TF_DeleteTensor(y);
  }
}

void UnknownShapes(TF_ShapeInferenceContext*, TF_Status*) {}

bool Register(const char* name, const std::vector<const char*>& inputs,
              const std::vector<const char*>& outputs,
              void (*compute)(void*, TF_OpKernelContext*)) {
  TF_Status* status = TF_NewStatus();
  TF_OpDefinitionBuilder* op = TF_NewOpDefinitionBuilder(name);
  for (const char* spec : inputs) TF_OpDefinitionBuilderAddInput(op, spec);
  for (const char* spec : outputs) TF_OpDefinitionBuilderAddOutput(op, spec);
  TF_OpDefinitionBuilderSetShapeInferenceFunction(op, &UnknownShapes);
  TF_RegisterOpDefinition(op, status);
  bool ok = TF_GetCode(status) == TF_OK;
  if (ok) {
    TF_KernelBuilder* kernel = TF_NewKernelBuilder(name, "CPU", &NoState, compute, &NoDelete);
    TF_RegisterKernelBuilder(name, kernel, status);
    ok = TF_GetCode(status) == TF_OK;
  }
  TF_DeleteStatus(status);
  return ok;
}

int g_registered = 0;

// TensorFlow aborts the process when an op name is registered twice, and its registry outlives any
// library. So the library is linked with -z nodelete: a dlclose (Deno closes what an isolate opened
// when the isolate ends, e.g. between test files) never unloads it, a later dlopen of the same file
// finds it loaded, and this constructor runs once per process. (Two different builds of this file
// loaded into one process would still collide; digitsum loads the one install-native recorded.)
__attribute__((constructor)) void RegisterDigitsumKernels() {
  int ok = 0;
  ok += Register("DigitsumMaxPool2x2Grad", {"x: float", "dy: float"}, {"dx: float"},
                 &MaxPool2x2GradCompute);
  ok += Register("DigitsumTorchAdam",
                 {"p: float", "g: float", "m: float", "v: float", "hyper: float"},
                 {"p_out: float", "m_out: float", "v_out: float"}, &TorchAdamCompute);
  ok += Register("DigitsumBiasAddRelu", {"x: float", "bias: float"}, {"y: float"},
                 &BiasAddReluCompute);
  g_registered = ok;
}

}  // namespace

extern "C" {

// How many ops loading the library registered (3 when all went well).
int digitsum_kernels_registered() { return g_registered; }

// Threads each op may use (at least 1).
void digitsum_kernels_set_threads(int threads) { g_threads = threads < 1 ? 1 : threads; }

}  // extern "C"
