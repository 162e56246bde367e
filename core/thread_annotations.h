// Clang's thread-safety attributes as TS_ macros (leveldb's port/thread_annotations.h). Under
// Clang with -Wthread-safety the compiler checks that a TS_GUARDED_BY member is touched only with
// its mutex held and that TS_REQUIRES functions are called with it; under GCC the macros are
// empty. Use them with core/mutex.h, whose Mutex is the capability these attributes name.
#pragma once

#if defined(__clang__)
#define TS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TS_THREAD_ANNOTATION(x)
#endif

// A class that is a lock (Mutex).
#define TS_CAPABILITY(name) TS_THREAD_ANNOTATION(capability(name))
// An RAII class that holds a lock for its lifetime (MutexLock).
#define TS_SCOPED_CAPABILITY TS_THREAD_ANNOTATION(scoped_lockable)
// A member read or written only with `mu` held.
#define TS_GUARDED_BY(mu) TS_THREAD_ANNOTATION(guarded_by(mu))
// A pointer member whose pointee is read or written only with `mu` held.
#define TS_PT_GUARDED_BY(mu) TS_THREAD_ANNOTATION(pt_guarded_by(mu))
// A function called with these locks held (and leaving them held).
#define TS_REQUIRES(...) TS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// A function that takes these locks itself, so must be called without them.
#define TS_EXCLUDES(...) TS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// A function that acquires / releases the lock (Mutex::Lock, Mutex::Unlock).
#define TS_ACQUIRE(...) TS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TS_RELEASE(...) TS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// A function that tells the analysis the lock is held (checked at run time, if at all).
#define TS_ASSERT_CAPABILITY(x) TS_THREAD_ANNOTATION(assert_capability(x))
// A function that returns a reference to the given lock.
#define TS_RETURN_CAPABILITY(x) TS_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function: say in a comment why it cannot follow the locking.
#define TS_NO_THREAD_SAFETY_ANALYSIS TS_THREAD_ANNOTATION(no_thread_safety_analysis)
