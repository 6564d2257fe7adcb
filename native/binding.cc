// Node-API binding for nvmq's native helpers. This is the ONLY translation
// unit that includes napi.h (and uv.h, for watching a ring's eventfd on the
// calling thread's event loop); everything it exposes is implemented as plain
// C++ in sibling files (fallocate.cc, ring.cc, vfio.cc) so that the core stays free of
// N-API types.
//
// Built with C++ exceptions disabled (node-addon-api's NODE_ADDON_API_DISABLE_
// CPP_EXCEPTIONS): JS errors are raised with ThrowAsJavaScriptException() and
// an immediate return.

#include <napi.h>
#include <uv.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include "fallocate.h"
#include "ring.h"
#include "vfio.h"

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
                                   " must be an integer from " +
                                   std::to_string(static_cast<long long>(min)) + " to " +
                                   std::to_string(static_cast<long long>(max)))
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

// ------------------------------------------------------------ eventfd watch

// An eventfd watched on the calling thread's event loop (uv_poll): a ring's
// completion eventfd, a VFIO interrupt vector's. When it is readable its
// counter is cleared and the JS callback runs through napi_make_callback
// (which runs the microtasks it queued before returning). The owner embeds
// it, sets poll.data to itself, and frees itself from the uv_close callback
// once Stop() said one is coming.
struct FdWatch {
  uv_poll_t poll;
  int fd = -1;
  bool polling = false;
  bool refed = false;
  napi_ref callback = nullptr;
  napi_async_context async_context = nullptr;

  // Watches `fd` on env's loop, calling `fn` (held by reference); false when libuv refuses.
  bool Start(napi_env env, int watched, napi_value fn, const char* resource, void* owner, uv_poll_cb cb) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &poll, watched) != 0) return false;
    fd = watched;
    poll.data = owner;
    polling = true;
    refed = true;
    napi_create_reference(env, fn, 1, &callback);
    napi_value name;
    napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, nullptr, name, &async_context);
    uv_poll_start(&poll, UV_READABLE, cb);
    return true;
  }

  // Holds the event loop open only while `want` (work in flight).
  void SetRef(bool want) {
    if (!polling || want == refed) return;
    refed = want;
    if (want) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&poll));
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&poll));
    }
  }

  // Clears the counter and runs the callback.
  void Fire(napi_env env) {
    if (callback == nullptr) return;
    uint64_t count;
    // A failed read only means the counter was already 0.
    if (read(fd, &count, sizeof count) < 0) count = 0;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value fn, recv, result;
    napi_get_reference_value(env, callback, &fn);
    napi_get_global(env, &recv);
    if (napi_make_callback(env, async_context, recv, fn, 0, nullptr, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
    napi_close_handle_scope(env, scope);
  }

  // Drops the JS references (`js` false in an environment's cleanup, which frees them itself).
  void ReleaseJs(napi_env env, bool js) {
    if (js) {
      if (callback != nullptr) napi_delete_reference(env, callback);
      if (async_context != nullptr) napi_async_destroy(env, async_context);
    }
    callback = nullptr;
    async_context = nullptr;
  }

  // Stops watching; true when `closed` will run (the owner is freed there), false when nothing was watched.
  bool Stop(uv_close_cb closed) {
    if (!polling) return false;
    uv_poll_stop(&poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), closed);
    return true;
  }
};

// The native side of an object whose eventfd is watched (a ring, an
// interrupt vector), owned apart from its JS wrapper: the uv_poll handle must
// stay alive until libuv's close callback has run, which can be after the
// wrapper is garbage or the environment (a worker thread) is being torn
// down. Subclasses say what goes before the watch stops and after.
struct WatchedState {
  napi_env env = nullptr;
  FdWatch watch;
  bool closing = false;
  // The wrapper's pointer to this state, cleared when the state is freed
  // first (environment teardown), so the wrapper's finalizer never sees it.
  void** owner = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;

  virtual ~WatchedState() = default;
  // Before the watch stops; `js` is false in the environment's cleanup hook,
  // where references are left for the environment to free.
  virtual void Shutdown(bool) {}
  // Once the watch has stopped (the fd is out of the loop's epoll set).
  virtual void Stopped() {}
};

void FreeWatched(WatchedState* s) {
  if (s->owner != nullptr) *s->owner = nullptr;
  if (s->hook != nullptr) napi_remove_async_cleanup_hook(s->hook);
  delete s;
}

void OnWatchClosed(uv_handle_t* h) { FreeWatched(static_cast<WatchedState*>(h->data)); }

void Teardown(WatchedState* s, bool js) {
  if (s->closing) return;
  s->closing = true;
  s->Shutdown(js);
  s->watch.ReleaseJs(s->env, js);
  const bool pending = s->watch.Stop(OnWatchClosed);
  s->Stopped();
  if (!pending) FreeWatched(s);
}

void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  // The hook is removed once the watcher is closed (FreeWatched).
  Teardown(static_cast<WatchedState*>(arg), false);
}

void OnReadable(uv_poll_t* h, int, int) {
  WatchedState* s = static_cast<WatchedState*>(h->data);
  if (s->closing) return;
  // The microtasks the handler queued (promise resolutions of the completed commands) run before this returns.
  s->watch.Fire(s->env);
}

// watch(fn) of a wrapper: starts watching `fd` for `s`, or throws (`what`
// names the eventfd in the message) and returns false.
bool WatchFromJs(const Napi::CallbackInfo& info, WatchedState* s, int fd, const char* what, const char* resource) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(env, "nvmq_native: watch(fn) needs a function").ThrowAsJavaScriptException();
    return false;
  }
  if (s->watch.polling) {
    Napi::Error::New(env, std::string("nvmq_native: the ") + what + " is already watched").ThrowAsJavaScriptException();
    return false;
  }
  if (!s->watch.Start(env, fd, info[0], resource, s, OnReadable)) {
    Napi::Error::New(env, std::string("nvmq_native: cannot watch the ") + what + "'s eventfd").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// `s`, just made for the wrapper's `*slot`: its environment, and the pointer cleared if it is freed first.
template <typename S>
void Own(napi_env env, S* s, S** slot) {
  s->env = env;
  s->owner = reinterpret_cast<void**>(slot);
}

// The wrapper lets go of its state: torn down (or already being torn down by
// the environment's cleanup) and freed once its watcher has closed.
template <typename S>
void Release(S** slot) {
  S* s = *slot;
  if (s == nullptr) return;
  s->owner = nullptr;
  *slot = nullptr;
  Teardown(s, true);
}

// ------------------------------------------------------------------ io_uring

// One ring and what its wrapper shares with the native side.
struct RingState : WatchedState {
  nvmq::Ring* ring = nullptr;
  // The typed arrays the native side reads and writes, kept alive here.
  napi_ref arrays[4] = {nullptr, nullptr, nullptr, nullptr};
  double* ops = nullptr;
  size_t ops_len = 0;
  double* segs = nullptr;
  size_t segs_len = 0;
  int32_t* cqes = nullptr;
  unsigned cq_cap = 0;

  // Cancels and waits for whatever is in flight and frees the ring.
  void Shutdown(bool js) override {
    delete ring;  // cancels and waits for operations still in flight
    ring = nullptr;
    if (!js) return;
    for (napi_ref& r : arrays) {
      if (r != nullptr) napi_delete_reference(env, r);
    }
  }
};

// The event loop holds a reference only while operations are in flight, so
// an idle ring never keeps a thread alive.
void UpdateRef(RingState* s) {
  if (s->ring == nullptr) return;
  s->watch.SetRef(s->ring->inflight() > 0);
}


// Typed array data pointer and length in elements; throws on a mismatch.
template <typename T>
bool ArrayArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type,
              const char* name, T** data, size_t* len, napi_ref* ref) {
  Napi::Env env = info.Env();
  if (!info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != type) {
    Napi::TypeError::New(env, std::string("nvmq_native: ") + name +
                                  " has the wrong type")
        .ThrowAsJavaScriptException();
    return false;
  }
  napi_typedarray_type t;
  size_t length;
  void* p;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, info[i], &t, &length, &p, &buffer,
                               &offset) != napi_ok ||
      p == nullptr) {
    Napi::TypeError::New(env, std::string("nvmq_native: ") + name +
                                  " has no memory")
        .ThrowAsJavaScriptException();
    return false;
  }
  *data = static_cast<T*>(p);
  *len = length;
  napi_create_reference(env, info[i], 1, ref);
  return true;
}

class RingWrap : public Napi::ObjectWrap<RingWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Ring",
        {InstanceMethod<&RingWrap::Submit>("submit"),
         InstanceMethod<&RingWrap::Reap>("reap"),
         InstanceMethod<&RingWrap::Watch>("watch"),
         InstanceMethod<&RingWrap::Cancel>("cancel"),
         InstanceMethod<&RingWrap::Close>("close"),
         InstanceMethod<&RingWrap::Inflight>("inflight"),
         InstanceMethod<&RingWrap::ReadNowait>("readNowait"),
         InstanceMethod<&RingWrap::RegisterFiles>("registerFiles"),
         InstanceMethod<&RingWrap::RegisterBuffers>("registerBuffers"),
         InstanceMethod<&RingWrap::Wait>("wait")});
  }

  // new Ring(arena: Uint8Array, entries, ops: Float64Array,
  //          segs: Float64Array, cqes: Int32Array)
  explicit RingWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<RingWrap>(info) {
    Napi::Env env = info.Env();
    double entries;
    if (info.Length() < 5 ||
        !ReadInteger(info, 1, "entries", 1, nvmq::kMaxEntries, &entries)) {
      if (!env.IsExceptionPending()) {
        Napi::TypeError::New(env, "nvmq_native: new Ring(arena, entries, ops, segs, cqes)")
            .ThrowAsJavaScriptException();
      }
      return;
    }
    s_ = new RingState();
    Own(env, s_, &s_);
    uint8_t* arena;
    size_t arena_len;
    size_t cq_len;
    if (!ArrayArg(info, 0, napi_uint8_array, "arena", &arena, &arena_len, &s_->arrays[0]) ||
        !ArrayArg(info, 2, napi_float64_array, "ops", &s_->ops, &s_->ops_len, &s_->arrays[1]) ||
        !ArrayArg(info, 3, napi_float64_array, "segs", &s_->segs, &s_->segs_len, &s_->arrays[2]) ||
        !ArrayArg(info, 4, napi_int32_array, "cqes", &s_->cqes, &cq_len, &s_->arrays[3])) {
      Release();
      return;
    }
    s_->cq_cap = static_cast<unsigned>(cq_len / 2);
    const int rc = nvmq::Ring::Create(static_cast<unsigned>(entries), arena,
                                      arena_len, &s_->ring);
    if (rc < 0) {
      Release();
      Napi::Error e = Napi::Error::New(
          env, std::string("io_uring setup failed: ") + std::strerror(-rc));
      e.Set("errno", Napi::Number::New(env, rc));
      e.ThrowAsJavaScriptException();
      return;
    }
    napi_add_async_cleanup_hook(env, OnEnvCleanup, static_cast<WatchedState*>(s_), &s_->hook);
  }

  ~RingWrap() override { Release(); }

 private:
  bool Open(Napi::Env env) {
    if (s_ != nullptr && s_->ring != nullptr) return true;
    Napi::Error::New(env, "nvmq_native: the ring is closed").ThrowAsJavaScriptException();
    return false;
  }

  // Completions now in `cqes`; with none left, notifications go back on
  // (and a completion that slipped in meanwhile is taken after all), so the
  // eventfd signals whatever completes after the caller goes idle.
  unsigned Drain() {
    nvmq::Ring* r = s_->ring;
    unsigned k = r->Reap(s_->cqes, s_->cq_cap);
    if (k == 0) {
      r->SetNotify(true);
      if (r->ready() > 0) k = r->Reap(s_->cqes, s_->cq_cap);
    }
    UpdateRef(s_);
    return k;
  }

  // submit(n) -> completions now in cqes (>= 0), or -errno when
  // io_uring_enter failed (the operations stay queued and go with the next
  // call). Notifications are off from here until a call returns 0.
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double n;
    if (!ReadInteger(info, 0, "n", 0, static_cast<double>(s_->ops_len / nvmq::kOpWords), &n)) {
      return env.Undefined();
    }
    s_->ring->SetNotify(false);
    const int rc = s_->ring->Submit(s_->ops, static_cast<unsigned>(n), s_->segs, s_->segs_len);
    const unsigned k = Drain();
    if (rc < 0 && k == 0) return Napi::Number::New(env, rc);
    return Napi::Number::New(env, k);
  }

  // wait(timeoutUs, spinUs = 0) -> completions now in cqes (>= 0; 0 on
  // timeout or with nothing in flight), or -errno. Polls for up to spinUs,
  // then blocks the thread in io_uring_enter; the eventfd stays quiet
  // meanwhile (the waiter takes what completes).
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double us;
    double spin = 0;
    if (!ReadInteger(info, 0, "timeoutUs", 0, 3600000000.0, &us)) return env.Undefined();
    if (info.Length() > 1 && !info[1].IsUndefined() &&
        !ReadInteger(info, 1, "spinUs", 0, nvmq::kMaxSpinUs, &spin)) {
      return env.Undefined();
    }
    s_->ring->SetNotify(false);
    const int rc = s_->ring->Wait(static_cast<unsigned>(us), static_cast<unsigned>(spin));
    const unsigned k = Drain();
    if (rc < 0 && rc != -ETIME && rc != -EINTR && k == 0) return Napi::Number::New(env, rc);
    return Napi::Number::New(env, k);
  }

  Napi::Value Reap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    return Napi::Number::New(env, Drain());
  }

  // watch(fn): fn() runs on this thread's event loop whenever the eventfd
  // says completions arrived.
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env) || !WatchFromJs(info, s_, s_->ring->event_fd(), "ring", "nvmq:io_uring")) return env.Undefined();
    UpdateRef(s_);
    return env.Undefined();
  }

  // cancel(timeoutMs) -> operations still in flight after cancelling all
  // and waiting; the completions are then reaped as usual.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double ms;
    if (!ReadInteger(info, 0, "timeoutMs", 0, 3600000, &ms)) return env.Undefined();
    const unsigned left = s_->ring->CancelAll(static_cast<unsigned>(ms));
    UpdateRef(s_);
    return Napi::Number::New(env, left);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() { ::Release(&s_); }

  Napi::Value Inflight(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Number::New(env, s_ != nullptr && s_->ring != nullptr ? s_->ring->inflight() : 0);
  }

  // registerFiles(fds: Int32Array) -> 0 | -errno
  Napi::Value RegisterFiles(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "nvmq_native: registerFiles(fds: Int32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array fds = info[0].As<Napi::Int32Array>();
    return Napi::Number::New(env, s_->ring->RegisterFiles(fds.Data(), static_cast<unsigned>(fds.ElementLength())));
  }

  // registerBuffers() -> 0 | -errno: the arena as fixed buffer 0.
  Napi::Value RegisterBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    return Napi::Number::New(env, s_->ring->RegisterBuffers());
  }

  // readNowait(fd, arenaOffset, length, pos) -> bytes | -errno (-EAGAIN:
  // not in the page cache).
  Napi::Value ReadNowait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    for (size_t i = 0; i < 4; i++) {
      if (!info[i].IsNumber()) {
        Napi::TypeError::New(env, "nvmq_native: readNowait(fd, offset, length, pos) takes numbers").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    const int rc = s_->ring->ReadNowait(info[0].As<Napi::Number>().DoubleValue(),
                                        info[1].As<Napi::Number>().DoubleValue(),
                                        info[2].As<Napi::Number>().DoubleValue(),
                                        info[3].As<Napi::Number>().DoubleValue());
    return Napi::Number::New(env, rc);
  }

  RingState* s_ = nullptr;
};

// pageOffsetOf(typedArray) -> the address of its first byte modulo 4096, so
// the DMA arena can start its pages on real page boundaries (O_DIRECT).
Napi::Value PageOffsetOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "nvmq_native: pageOffsetOf(typedArray)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  napi_typedarray_type t;
  size_t length, offset;
  void* p;
  napi_value buffer;
  napi_get_typedarray_info(env, info[0], &t, &length, &p, &buffer, &offset);
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(p) & 4095));
}

// copyBytes(dst, dstOffset, src, srcOffset, length): memmove between two
// Uint8Arrays (a RAM namespace's SharedArrayBuffer and a socket's buffer).
// V8 copies into and out of shared memory with relaxed atomic word moves,
// about 1.5x the time of a memmove for 4 KiB here; the copy is the
// namespace's whole cost per I/O. Offsets are the views' own; a range
// outside either view throws a RangeError and copies nothing; overlapping
// views copy as TypedArray.set() does. Other threads writing the same
// shared bytes at the same time race with it as with any plain copy (the
// namespace's commands order their own I/O).
// The Uint8Array argument `index`, or a TypeError (false).
bool ReadBytes(const Napi::CallbackInfo& info, size_t index, const char* name, Napi::Uint8Array* out) {
  Napi::Value v = info[index];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(info.Env(), std::string("nvmq_native: ") + name + " must be a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::Uint8Array>();
  return true;
}

Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array dst, src;
  double dstOff, srcOff, n;
  if (!ReadBytes(info, 0, "dst", &dst) || !ReadInteger(info, 1, "dstOffset", 0, kMaxSafeInteger, &dstOff) ||
      !ReadBytes(info, 2, "src", &src) || !ReadInteger(info, 3, "srcOffset", 0, kMaxSafeInteger, &srcOff) ||
      !ReadInteger(info, 4, "length", 0, kMaxSafeInteger, &n)) {
    return env.Undefined();
  }
  if (dstOff + n > static_cast<double>(dst.ElementLength()) || srcOff + n > static_cast<double>(src.ElementLength())) {
    Napi::RangeError::New(env, "nvmq_native: copyBytes: a range outside its view").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (n > 0) std::memmove(dst.Data() + static_cast<size_t>(dstOff), src.Data() + static_cast<size_t>(srcOff), static_cast<size_t>(n));
  return env.Undefined();
}

// An engine's shared memory (its DMA arena, RAM namespaces) is calloc'd by
// Node. Once glibc has seen a block above its mmap threshold freed, it raises
// the threshold to that block's size and serves the next such blocks from its
// heaps, where what a closed engine frees stays resident and is not reused
// well: every open/close cycle grew the process by its shared memory (about
// 8 MiB a cycle for a small engine, linear over hundreds). Pinning the
// threshold at glibc's own starting value (128 KiB) turns the dynamic raise
// off, so large blocks are always mapped and unmapped whole.
// dupFd(fd) -> a new descriptor (close-on-exec) for the same open file | -errno.
// A TCP connection accepted on one thread is served on another: that thread
// opens its own net.Socket on the duplicate, and the first closes its own.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) {
    Napi::TypeError::New(env, "nvmq_native: dupFd(fd) expects 1 argument")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double fd;
  if (!ReadInteger(info, 0, "fd", 0, std::numeric_limits<int32_t>::max(), &fd)) {
    return env.Undefined();
  }
  const int out = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);
  return Napi::Number::New(env, out < 0 ? -errno : out);
}

void PinMmapThreshold() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

// ------------------------------------------------------------------ VFIO

// BAR0's mapping, shared by the device wrapper (close() unmaps it) and the
// ArrayBuffer over it (its finalizer unmaps it if close() never ran).
struct BarMap {
  void* addr = nullptr;
  size_t len = 0;
  void Unmap() {
    if (addr != nullptr) munmap(addr, len);
    addr = nullptr;
  }
};

void FinalizeBar(napi_env, void*, void* hint) {
  auto* p = static_cast<std::shared_ptr<BarMap>*>(hint);
  (*p)->Unmap();
  delete p;
}

Napi::Object RegionObject(Napi::Env env, const nvmq::VfioRegion& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Napi::Number::New(env, static_cast<double>(r.size)));
  o.Set("offset", Napi::Number::New(env, static_cast<double>(r.offset)));
  o.Set("flags", Napi::Number::New(env, r.flags));
  return o;
}

void ThrowErrno(Napi::Env env, const std::string& msg, int rc) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, rc));
  e.ThrowAsJavaScriptException();
}

// An ArrayBuffer over `bar`'s mapping; its finalizer unmaps it unless a
// close() did first. Undefined (an exception pending, the mapping undone) on failure.
Napi::Value BarArrayBuffer(Napi::Env env, const std::shared_ptr<BarMap>& bar) {
  auto* hint = new std::shared_ptr<BarMap>(bar);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, bar->addr, bar->len, FinalizeBar, hint, &ab) != napi_ok) {
    bar->Unmap();
    delete hint;
    Napi::Error::New(env, "nvmq_native: cannot make an ArrayBuffer over BAR0").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Value(env, ab);
}

// new VfioBar(deviceFd, offset, size): a thread's own mapping of BAR0 from
// the device fd that a Vfio in this process holds (a worker thread rings its
// queue's doorbells through it). buffer() is the ArrayBuffer over it;
// close() detaches and unmaps it (idempotent; garbage collection does too).
class VfioBarWrap : public Napi::ObjectWrap<VfioBarWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VfioBar",
                       {InstanceMethod<&VfioBarWrap::Buffer>("buffer"), InstanceMethod<&VfioBarWrap::Close>("close")});
  }

  explicit VfioBarWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VfioBarWrap>(info) {
    Napi::Env env = info.Env();
    double fd, offset, size;
    if (!ReadInteger(info, 0, "deviceFd", 0, 2147483647.0, &fd) || !ReadInteger(info, 1, "offset", 0, kMaxSafeInteger, &offset) ||
        !ReadInteger(info, 2, "size", 4096, 1ull << 40, &size)) {
      return;
    }
    auto bar = std::make_shared<BarMap>();
    std::string why;
    const int rc = nvmq::Vfio::MapRegion(static_cast<int>(fd), static_cast<uint64_t>(offset), static_cast<size_t>(size), &bar->addr, &why);
    if (rc < 0) {
      ThrowErrno(env, why, rc);
      return;
    }
    bar->len = static_cast<size_t>(size);
    Napi::Value ab = BarArrayBuffer(env, bar);
    if (ab.IsUndefined()) return;
    bar_ = bar;
    ref_ = Napi::Persistent(ab.As<Napi::ArrayBuffer>());
  }

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info) {
    if (ref_.IsEmpty()) {
      Napi::Error::New(info.Env(), "nvmq_native: this BAR0 mapping is closed").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return ref_.Value();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (!ref_.IsEmpty()) {
      napi_detach_arraybuffer(info.Env(), ref_.Value());
      ref_.Reset();
    }
    if (bar_) bar_->Unmap();
    bar_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<BarMap> bar_;
  Napi::Reference<Napi::ArrayBuffer> ref_;
};

// The native side of one thread's interrupt vector: its own duplicate of
// the vector's eventfd (so the device's Close() cannot pull it from under
// the watcher) and the uv_poll on it, kept alive, like a ring's, until
// libuv's close callback has run.
struct IrqState : WatchedState {
  int fd = -1;

  // The watch is out of the loop's epoll set (uv_close stops the poll at
  // once): the duplicate goes now, not a loop turn later, so a close()
  // leaves no descriptor behind when it returns.
  void Stopped() override {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  ~IrqState() override { Stopped(); }
};

// new VfioInterrupt(eventfd): one MSI-X vector of a device a Vfio in this
// process has enabled, as the thread that handles it sees it.
class VfioInterruptWrap : public Napi::ObjectWrap<VfioInterruptWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VfioInterrupt",
                       {InstanceMethod<&VfioInterruptWrap::Watch>("watch"),
                        InstanceMethod<&VfioInterruptWrap::Ref>("ref"),
                        InstanceMethod<&VfioInterruptWrap::Wait>("wait"),
                        InstanceMethod<&VfioInterruptWrap::Close>("close")});
  }

  explicit VfioInterruptWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VfioInterruptWrap>(info) {
    Napi::Env env = info.Env();
    double fd;
    if (!ReadInteger(info, 0, "eventfd", 0, std::numeric_limits<int32_t>::max(), &fd)) return;
    const int dup = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      const int err = errno;
      ThrowErrno(env, std::string("cannot duplicate the interrupt eventfd: ") + std::strerror(err), -err);
      return;
    }
    s_ = new IrqState();
    Own(env, s_, &s_);
    s_->fd = dup;
    napi_add_async_cleanup_hook(env, OnEnvCleanup, static_cast<WatchedState*>(s_), &s_->hook);
  }

  ~VfioInterruptWrap() override { Release(); }

 private:
  bool Open(Napi::Env env) {
    if (s_ != nullptr && !s_->closing) return true;
    Napi::Error::New(env, "nvmq_native: the interrupt is closed").ThrowAsJavaScriptException();
    return false;
  }

  // watch(fn): fn() runs on this thread's event loop each time the vector
  // fires. Unreferenced until ref(true).
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env) || !WatchFromJs(info, s_, s_->fd, "interrupt", "nvmq:msix")) return env.Undefined();
    s_->watch.SetRef(false);
    return env.Undefined();
  }

  // ref(held): whether the watch keeps the event loop alive (commands in flight).
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (s_ != nullptr && !s_->closing) s_->watch.SetRef(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // wait(timeoutUs) -> 1 the vector fired (counter cleared), 0 timed out, -errno.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double us;
    if (!ReadInteger(info, 0, "timeoutUs", 0, 3600000000.0, &us)) return env.Undefined();
    return Napi::Number::New(env, nvmq::vfio_wait_eventfd(s_->fd, static_cast<uint64_t>(us)));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() { ::Release(&s_); }

  IrqState* s_ = nullptr;
};

// new Vfio(groupPath, pciAddress): the container, group and device open.
class VfioWrap : public Napi::ObjectWrap<VfioWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Vfio",
                       {InstanceMethod<&VfioWrap::Regions>("regions"),
                        InstanceMethod<&VfioWrap::Bar0>("bar0"),
                        InstanceMethod<&VfioWrap::DeviceFd>("deviceFd"),
                        InstanceMethod<&VfioWrap::MapDma>("mapDma"),
                        InstanceMethod<&VfioWrap::UnmapDma>("unmapDma"),
                        InstanceMethod<&VfioWrap::ConfigRead>("configRead"),
                        InstanceMethod<&VfioWrap::ConfigWrite>("configWrite"),
                        InstanceMethod<&VfioWrap::MsixCount>("msixCount"),
                        InstanceMethod<&VfioWrap::EnableMsix>("enableMsix"),
                        InstanceMethod<&VfioWrap::Close>("close")});
  }

  explicit VfioWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VfioWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      Napi::TypeError::New(env, "nvmq_native: new Vfio(groupPath, pciAddress)").ThrowAsJavaScriptException();
      return;
    }
    const std::string group = info[0].As<Napi::String>().Utf8Value();
    const std::string pci = info[1].As<Napi::String>().Utf8Value();
    std::string why;
    const int rc = nvmq::Vfio::Open(group.c_str(), pci.c_str(), &dev_, &why);
    if (rc < 0) ThrowErrno(env, why, rc);
  }

  ~VfioWrap() override {
    // Garbage without close(): the fds and DMA mappings go; BAR0's mapping
    // stays with its ArrayBuffer until that is collected too.
    for (auto& m : pinned_) napi_delete_reference(Env(), m.second.second);
    pinned_.clear();
    delete dev_;
  }

 private:
  bool Open(Napi::Env env) {
    if (dev_ != nullptr && dev_->is_open()) return true;
    Napi::Error::New(env, "nvmq_native: the VFIO device is closed").ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value Regions(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    o.Set("bar0", RegionObject(env, dev_->bar0()));
    o.Set("config", RegionObject(env, dev_->config()));
    return o;
  }

  // bar0() -> ArrayBuffer over the mapped BAR0 (the same one on every call).
  Napi::Value Bar0(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!bar_ref_.IsEmpty()) return bar_ref_.Value();
    auto bar = std::make_shared<BarMap>();
    std::string why;
    const int rc = dev_->MapBar0(&bar->addr, &bar->len, &why);
    if (rc < 0) {
      ThrowErrno(env, why, rc);
      return env.Undefined();
    }
    Napi::Value ab = BarArrayBuffer(env, bar);
    if (ab.IsUndefined()) return ab;
    bar_ = bar;
    bar_ref_ = Napi::Persistent(ab.As<Napi::ArrayBuffer>());
    return bar_ref_.Value();
  }

  // deviceFd() -> the device's file descriptor (process-wide: another thread
  // maps BAR0 from it with new VfioBar(fd, offset, size)).
  Napi::Value DeviceFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    return Napi::Number::New(env, dev_->device_fd());
  }

  // mapDma(bytes: TypedArray, iova) -> undefined; throws with errno. The
  // array (and its memory) is kept alive until unmapDma(iova) or close().
  Napi::Value MapDma(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double iova;
    if (!info[0].IsTypedArray() || !ReadInteger(info, 1, "iova", 0, kMaxSafeInteger, &iova)) {
      if (!env.IsExceptionPending()) Napi::TypeError::New(env, "nvmq_native: mapDma(bytes, iova)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    napi_typedarray_type t;
    size_t length, offset;
    void* p;
    napi_value buffer;
    napi_get_typedarray_info(env, info[0], &t, &length, &p, &buffer, &offset);
    const size_t bytes = info[0].As<Napi::TypedArray>().ByteLength();
    std::string why;
    const int rc = dev_->MapDma(p, bytes, static_cast<uint64_t>(iova), &why);
    if (rc < 0) {
      ThrowErrno(env, why, rc);
      return env.Undefined();
    }
    napi_ref ref;
    napi_create_reference(env, info[0], 1, &ref);
    pinned_[static_cast<uint64_t>(iova)] = {bytes, ref};
    return env.Undefined();
  }

  // unmapDma(iova) -> 0 | -errno
  Napi::Value UnmapDma(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double iova;
    if (!ReadInteger(info, 0, "iova", 0, kMaxSafeInteger, &iova)) return env.Undefined();
    auto it = pinned_.find(static_cast<uint64_t>(iova));
    if (it == pinned_.end()) return Napi::Number::New(env, -ENOENT);
    const int rc = dev_->UnmapDma(it->first, it->second.first);
    napi_delete_reference(env, it->second.second);
    pinned_.erase(it);
    return Napi::Number::New(env, rc);
  }

  // configRead(offset, size: 1 | 2 | 4) -> value | -errno
  Napi::Value ConfigRead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double off, size;
    if (!ReadInteger(info, 0, "offset", 0, 4095, &off) || !ReadInteger(info, 1, "size", 1, 4, &size)) return env.Undefined();
    uint32_t v = 0;
    const int rc = dev_->ConfigRead(static_cast<uint32_t>(off), &v, static_cast<size_t>(size));
    return Napi::Number::New(env, rc < 0 ? static_cast<double>(rc) : static_cast<double>(v));
  }

  // configWrite(offset, size: 1 | 2 | 4, value) -> bytes written | -errno
  Napi::Value ConfigWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double off, size, value;
    if (!ReadInteger(info, 0, "offset", 0, 4095, &off) || !ReadInteger(info, 1, "size", 1, 4, &size) ||
        !ReadInteger(info, 2, "value", 0, 4294967295.0, &value)) {
      return env.Undefined();
    }
    const uint32_t v = static_cast<uint32_t>(value);
    return Napi::Number::New(env, dev_->ConfigWrite(static_cast<uint32_t>(off), &v, static_cast<size_t>(size)));
  }

  // msixCount() -> MSI-X vectors the device has (0: none); throws with errno.
  Napi::Value MsixCount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    uint32_t n = 0;
    std::string why;
    const int rc = dev_->MsixCount(&n, &why);
    if (rc < 0) {
      ThrowErrno(env, why, rc);
      return env.Undefined();
    }
    return Napi::Number::New(env, n);
  }

  // enableMsix(n) -> the eventfds of vectors [0, n) (Int32Array), attached;
  // throws with errno, nothing attached. close() detaches and closes them.
  Napi::Value EnableMsix(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    double n;
    if (!ReadInteger(info, 0, "vectors", 1, 2048, &n)) return env.Undefined();
    std::string why;
    const int rc = dev_->EnableMsix(static_cast<uint32_t>(n), &why);
    if (rc < 0) {
      ThrowErrno(env, why, rc);
      return env.Undefined();
    }
    const std::vector<int>& fds = dev_->irq_fds();
    Napi::Int32Array out = Napi::Int32Array::New(env, fds.size());
    for (size_t i = 0; i < fds.size(); i++) out[i] = fds[i];
    return out;
  }

  // close(): BAR0's ArrayBuffer is detached (later accesses throw) and
  // unmapped, every DMA mapping undone, every fd closed. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!bar_ref_.IsEmpty()) {
      napi_detach_arraybuffer(env, bar_ref_.Value());
      bar_ref_.Reset();
    }
    if (bar_) bar_->Unmap();
    bar_.reset();
    for (auto& m : pinned_) {
      if (dev_ != nullptr) dev_->UnmapDma(m.first, m.second.first);
      napi_delete_reference(env, m.second.second);
    }
    pinned_.clear();
    if (dev_ != nullptr) dev_->Close();
    return env.Undefined();
  }

  nvmq::Vfio* dev_ = nullptr;
  std::shared_ptr<BarMap> bar_;
  Napi::Reference<Napi::ArrayBuffer> bar_ref_;
  std::map<uint64_t, std::pair<uint64_t, napi_ref>> pinned_;  // iova -> (bytes, the array)
};

// vfioInjectFailure(step): see nvmq::vfio_inject_failure (tests only).
Napi::Value VfioInjectFailure(const Napi::CallbackInfo& info) {
  double step;
  if (!ReadInteger(info, 0, "step", 0, 1000, &step)) return info.Env().Undefined();
  nvmq::vfio_inject_failure(static_cast<int>(step));
  return info.Env().Undefined();
}

void RegisterVfio(Napi::Env env, Napi::Object exports) {
  exports.Set("vfio", Napi::Boolean::New(env, nvmq::vfio_supported()));
  exports.Set("vfioInjectFailure", Napi::Function::New(env, VfioInjectFailure, "vfioInjectFailure"));
  exports.Set("Vfio", VfioWrap::Define(env));
  exports.Set("VfioBar", VfioBarWrap::Define(env));
  exports.Set("VfioInterrupt", VfioInterruptWrap::Define(env));
}

void RegisterRing(Napi::Env env, Napi::Object exports) {
  exports.Set("ioUring", Napi::Boolean::New(env, nvmq::ring_supported()));
  exports.Set("Ring", RingWrap::Define(env));
  exports.Set("pageOffsetOf", Napi::Function::New(env, PageOffsetOf, "pageOffsetOf"));
  exports.Set("copyBytes", Napi::Function::New(env, CopyBytes, "copyBytes"));
}

void RegisterFallocate(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("FALLOC_FL_KEEP_SIZE",
              Napi::Number::New(env, nvmq::kFallocFlKeepSize));
  exports.Set("FALLOC_FL_PUNCH_HOLE",
              Napi::Number::New(env, nvmq::kFallocFlPunchHole));
  exports.Set("FALLOC_FL_ZERO_RANGE",
              Napi::Number::New(env, nvmq::kFallocFlZeroRange));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinMmapThreshold();
  RegisterFallocate(env, exports);
  RegisterRing(env, exports);
  RegisterVfio(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(nvmq_native, Init)
