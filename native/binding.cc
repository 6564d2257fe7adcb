// Node-API binding for nvmq's native helpers. This is the ONLY translation
// unit that includes napi.h; everything it exposes is implemented as plain
// C++ in sibling files (fallocate.cc, and later io_uring support) so that the
// core stays free of N-API types.
//
// Built with C++ exceptions disabled (node-addon-api's NODE_ADDON_API_DISABLE_
// CPP_EXCEPTIONS): JS errors are raised with ThrowAsJavaScriptException() and
// an immediate return.

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "fallocate.h"

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// Throws a TypeError/RangeError on the JS side and returns false if argument
// `index` is not a Number holding an integer within [min, max].
bool ReadInteger(const Napi::CallbackInfo& info, size_t index,
                 const char* name, double min, double max, double* out) {
  Napi::Env env = info.Env();
  Napi::Value v = info[index];
  if (!v.IsNumber()) {
    Napi::TypeError::New(env, std::string("nvmq_native: ") + name +
                                  " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < min || d > max) {
    Napi::RangeError::New(env, std::string("nvmq_native: ") + name +
                                   " must be an integer in range")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = d;
  return true;
}

// fallocate(fd, mode, offset, length) -> 0 | -errno
// Kernel failures are reported through the negative return value, never by
// throwing; only malformed arguments throw.
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) {
    Napi::TypeError::New(env,
                         "nvmq_native: fallocate(fd, mode, offset, length) "
                         "expects 4 arguments")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  constexpr double kIntMin = std::numeric_limits<int32_t>::min();
  constexpr double kIntMax = std::numeric_limits<int32_t>::max();
  double fd, mode, offset, length;
  if (!ReadInteger(info, 0, "fd", kIntMin, kIntMax, &fd) ||
      !ReadInteger(info, 1, "mode", kIntMin, kIntMax, &mode) ||
      !ReadInteger(info, 2, "offset", -kMaxSafeInteger, kMaxSafeInteger,
                   &offset) ||
      !ReadInteger(info, 3, "length", -kMaxSafeInteger, kMaxSafeInteger,
                   &length)) {
    return env.Undefined();
  }
  const int rc = nvmq_fallocate(static_cast<int>(fd), static_cast<int>(mode),
                                static_cast<int64_t>(offset),
                                static_cast<int64_t>(length));
  return Napi::Number::New(env, rc);
}

void RegisterFallocate(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("FALLOC_FL_KEEP_SIZE",
              Napi::Number::New(env, nvmq::kFallocFlKeepSize));
  exports.Set("FALLOC_FL_PUNCH_HOLE",
              Napi::Number::New(env, nvmq::kFallocFlPunchHole));
  exports.Set("FALLOC_FL_ZERO_RANGE",
              Napi::Number::New(env, nvmq::kFallocFlZeroRange));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterFallocate(env, exports);
  // Future modules (io_uring, ...) register themselves here.
  return exports;
}

}  // namespace

NODE_API_MODULE(nvmq_native, Init)
