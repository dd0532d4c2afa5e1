/* SPDX-License-Identifier: GPL-2.0 */
/*
 * harness.h - a small kselftest_harness.h work-alike for the vmreset selftests
 *
 * We do not use the kernel's own harness: it lives in the kernel source tree,
 * no distribution packages it, and it changes between releases. This one
 * speaks the same TAP 13 dialect, so the kselftest runner and CI parsers treat
 * our binaries like any other kselftest.
 *
 * Include it in exactly one .c file per test program, write tests with TEST(),
 * TEST_F() and friends, and end the file with TEST_HARNESS_MAIN.
 *
 * Every test runs in a forked child, so an assertion, a crash or a timeout
 * fails that one test and the parent carries on and reports. Child exit codes
 * follow kselftest: 0 pass, 1 fail, 4 skip.
 *
 * ASSERT_*() and EXPECT_*() work in any function a test calls, not only in the
 * test body, and from any thread. An ASSERT that fails off the main thread
 * ends the child at once (no fixture teardown: the process is going away and
 * the kernel closes its fds). A statement may follow any of them; it runs only
 * when the check fails, before an ASSERT aborts the test:
 *
 *	ASSERT_EQ(0, ret) TH_LOG("open %s: %s", path, strerror(errno));
 *
 * Timeouts: 120 s per test; TEST_TIMEOUT() and TEST_F_TIMEOUT() set another
 * one, and VMRESET_TEST_TIMEOUT=<seconds> in the environment replaces them all
 * (for slow emulators).
 *
 * Command line: -t NAME (repeatable) runs only the tests called NAME, either
 * "fixture.test" or the bare test name; -l lists the tests.
 * Exit status: 1 if any test failed, 4 if every test was skipped, else 0.
 */
#ifndef VMRESET_SELFTEST_HARNESS_H
#define VMRESET_SELFTEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_XFAIL	2
#define KSFT_XPASS	3
#define KSFT_SKIP	4

#define TH_DEFAULT_TIMEOUT	120
#define TH_SKIP_REASON_LEN	256

#define __TH_UNUSED		__attribute__((unused))

struct __test_metadata {
	const char *fixture;
	const char *name;
	void (*setup)(struct __test_metadata *_metadata, void *self);
	void (*body)(struct __test_metadata *_metadata, void *self);
	void (*teardown)(struct __test_metadata *_metadata, void *self);
	size_t self_size;
	unsigned int timeout;

	/* Only meaningful inside the child running the test. */
	int failed;
	int skipped;
	int setup_done;

	struct __test_metadata *next;
};

/* ------------------------------------------------------------------------
 * Declaring tests
 */

#define FIXTURE_DATA(fixture)	struct __th_fixture_##fixture

/*
 * FIXTURE(name) { members }; declares the fixture's data, zeroed for every
 * test. Both FIXTURE_SETUP() and FIXTURE_TEARDOWN() must follow it (the
 * forward declarations below let TEST_F() come before or after them).
 */
#define FIXTURE(fixture)							\
	static void __th_setup_thunk_##fixture(struct __test_metadata *,	\
					       void *);				\
	static void __th_teardown_thunk_##fixture(struct __test_metadata *,	\
						  void *);			\
	FIXTURE_DATA(fixture)

#define __TH_FIXTURE_HOOK(fixture, hook)					\
	static void __th_##hook##_##fixture(					\
		struct __test_metadata __TH_UNUSED *_metadata,			\
		FIXTURE_DATA(fixture) __TH_UNUSED *self);			\
	static void __th_##hook##_thunk_##fixture(struct __test_metadata *m,	\
						  void *s)			\
	{									\
		__th_##hook##_##fixture(m, s);					\
	}									\
	static void __th_##hook##_##fixture(					\
		struct __test_metadata __TH_UNUSED *_metadata,			\
		FIXTURE_DATA(fixture) __TH_UNUSED *self)

#define FIXTURE_SETUP(fixture)		__TH_FIXTURE_HOOK(fixture, setup)
#define FIXTURE_TEARDOWN(fixture)	__TH_FIXTURE_HOOK(fixture, teardown)

#define __TH_REGISTER(id, fix, nm, set, body_fn, tear, size, secs)		\
	static struct __test_metadata __th_md_##id = {				\
		.fixture = fix,							\
		.name = nm,							\
		.setup = set,							\
		.body = body_fn,						\
		.teardown = tear,						\
		.self_size = size,						\
		.timeout = secs,						\
	};									\
	static void __attribute__((constructor)) __th_reg_##id(void)		\
	{									\
		__th_register(&__th_md_##id);					\
	}

#define __TEST_IMPL(test, secs)							\
	static void __th_test_##test(						\
		struct __test_metadata __TH_UNUSED *_metadata);			\
	static void __th_body_##test(struct __test_metadata *m,			\
				     void __TH_UNUSED *s)			\
	{									\
		__th_test_##test(m);						\
	}									\
	__TH_REGISTER(global_##test, "global", #test, NULL,			\
		      __th_body_##test, NULL, 0, secs)				\
	static void __th_test_##test(						\
		struct __test_metadata __TH_UNUSED *_metadata)

#define __TEST_F_IMPL(fixture, test, secs)					\
	static void __th_test_##fixture##_##test(				\
		struct __test_metadata __TH_UNUSED *_metadata,			\
		FIXTURE_DATA(fixture) __TH_UNUSED *self);			\
	static void __th_body_##fixture##_##test(struct __test_metadata *m,	\
						 void *s)			\
	{									\
		__th_test_##fixture##_##test(m, s);				\
	}									\
	__TH_REGISTER(fixture##_##test, #fixture, #test,			\
		      __th_setup_thunk_##fixture,				\
		      __th_body_##fixture##_##test,				\
		      __th_teardown_thunk_##fixture,				\
		      sizeof(FIXTURE_DATA(fixture)), secs)			\
	static void __th_test_##fixture##_##test(				\
		struct __test_metadata __TH_UNUSED *_metadata,			\
		FIXTURE_DATA(fixture) __TH_UNUSED *self)

#define TEST(test)				__TEST_IMPL(test, 0)
#define TEST_TIMEOUT(test, secs)		__TEST_IMPL(test, secs)
#define TEST_F(fixture, test)			__TEST_F_IMPL(fixture, test, 0)
#define TEST_F_TIMEOUT(fixture, test, secs)	__TEST_F_IMPL(fixture, test, secs)

#define TEST_HARNESS_MAIN							\
	int main(int argc, char **argv)						\
	{									\
		return __th_run(argc, argv);					\
	}

/* ------------------------------------------------------------------------
 * Checks
 */

#define TH_LOG(fmt, ...)							\
	__th_log(__FILE__, __LINE__, fmt, ##__VA_ARGS__)

/*
 * Marks the test skipped with a reason, then runs @statement (usually
 * "return"). A test that also failed is reported as failed.
 */
#define SKIP(statement, fmt, ...)						\
	do {									\
		__th_skip(fmt, ##__VA_ARGS__);					\
		statement;							\
	} while (0)

/*
 * One for-statement, so that a check is a single statement (safe in an
 * unbraced if/else) and can take an optional failure statement after it.
 */
#define __TH_ON_FAIL(failed_expr, is_assert)					\
	for (int __th_trig = (failed_expr); __th_trig;				\
	     __th_trig = __th_bail(is_assert))

/* _Generic does not evaluate its operand: each argument is evaluated once. */
#define __TH_IS_SIGNED(x)							\
	_Generic((x),								\
		 char: (char)-1 < 0,						\
		 signed char: 1, short: 1, int: 1, long: 1, long long: 1,	\
		 default: 0)

enum { __TH_EQ, __TH_NE, __TH_LT, __TH_LE, __TH_GT, __TH_GE };

/*
 * The public macros stringify their arguments themselves: past one level of
 * expansion, ASSERT_EQ(KVM_API_VERSION, v) would print "12" for the name.
 */
#define __TH_CMP(e_str, expected, op, s_str, seen, is_assert)			\
	__TH_ON_FAIL(__th_cmp_failed(__FILE__, __LINE__, op,			\
				     e_str, (unsigned long long)(expected),	\
				     __TH_IS_SIGNED(expected),			\
				     s_str, (unsigned long long)(seen),		\
				     __TH_IS_SIGNED(seen)), is_assert)

/* As in kselftest, ASSERT_LT(a, b) checks a < b. */
#define ASSERT_EQ(expected, seen)	__TH_CMP(#expected, expected, __TH_EQ, #seen, seen, 1)
#define ASSERT_NE(expected, seen)	__TH_CMP(#expected, expected, __TH_NE, #seen, seen, 1)
#define ASSERT_LT(expected, seen)	__TH_CMP(#expected, expected, __TH_LT, #seen, seen, 1)
#define ASSERT_LE(expected, seen)	__TH_CMP(#expected, expected, __TH_LE, #seen, seen, 1)
#define ASSERT_GT(expected, seen)	__TH_CMP(#expected, expected, __TH_GT, #seen, seen, 1)
#define ASSERT_GE(expected, seen)	__TH_CMP(#expected, expected, __TH_GE, #seen, seen, 1)
#define EXPECT_EQ(expected, seen)	__TH_CMP(#expected, expected, __TH_EQ, #seen, seen, 0)
#define EXPECT_NE(expected, seen)	__TH_CMP(#expected, expected, __TH_NE, #seen, seen, 0)
#define EXPECT_LT(expected, seen)	__TH_CMP(#expected, expected, __TH_LT, #seen, seen, 0)
#define EXPECT_LE(expected, seen)	__TH_CMP(#expected, expected, __TH_LE, #seen, seen, 0)
#define EXPECT_GT(expected, seen)	__TH_CMP(#expected, expected, __TH_GT, #seen, seen, 0)
#define EXPECT_GE(expected, seen)	__TH_CMP(#expected, expected, __TH_GE, #seen, seen, 0)

#define __TH_BOOL(str, cond, want, is_assert)				\
	__TH_ON_FAIL(__th_bool_failed(__FILE__, __LINE__, str, !!(cond),	\
				      want), is_assert)

#define ASSERT_TRUE(cond)		__TH_BOOL(#cond, cond, 1, 1)
#define ASSERT_FALSE(cond)		__TH_BOOL(#cond, cond, 0, 1)
#define EXPECT_TRUE(cond)		__TH_BOOL(#cond, cond, 1, 0)
#define EXPECT_FALSE(cond)		__TH_BOOL(#cond, cond, 0, 0)

#define __TH_PTR(str, ptr, want_null, is_assert)				\
	__TH_ON_FAIL(__th_ptr_failed(__FILE__, __LINE__, str,			\
				     (const void *)(ptr), want_null), is_assert)

#define ASSERT_NULL(ptr)		__TH_PTR(#ptr, ptr, 1, 1)
#define ASSERT_NONNULL(ptr)		__TH_PTR(#ptr, ptr, 0, 1)
#define EXPECT_NULL(ptr)		__TH_PTR(#ptr, ptr, 1, 0)
#define EXPECT_NONNULL(ptr)		__TH_PTR(#ptr, ptr, 0, 0)

/*
 * Checks that @expr returns -1 with errno == @err: the shape of a refused
 * syscall or ioctl. errno is sampled right after @expr, before anything else
 * can overwrite it.
 */
#define __TH_ERRNO(expr_str, expr, err_str, err, is_assert)			\
	__TH_ON_FAIL(({								\
		long __th_ret = (long)(expr);					\
		int __th_errno = errno;						\
		__th_errno_failed(__FILE__, __LINE__, expr_str, err_str,	\
				  __th_ret, __th_errno, (err));			\
	}), is_assert)

#define ASSERT_ERRNO(expr, err)		__TH_ERRNO(#expr, expr, #err, err, 1)
#define EXPECT_ERRNO(expr, err)		__TH_ERRNO(#expr, expr, #err, err, 0)

/* ------------------------------------------------------------------------
 * Implementation. Everything is static: one test program, one copy.
 */

static struct __test_metadata *__th_head __TH_UNUSED;
static struct __test_metadata *__th_tail __TH_UNUSED;
static bool __th_ctor_forward __TH_UNUSED;
static struct __test_metadata *__th_current __TH_UNUSED;
static pid_t __th_main_tid __TH_UNUSED;
static jmp_buf __th_env __TH_UNUSED;
/* MAP_SHARED, so the parent can print the reason the child gave. */
static char *__th_skip_reason __TH_UNUSED;

/*
 * The order in which a toolchain runs the constructors of one file is not
 * guaranteed. This one sits above every test; if it runs first, the tests'
 * constructors run in source order and are appended, otherwise they run in
 * reverse and are prepended. Either way the list ends up in source order.
 */
static void __attribute__((constructor)) __th_probe_ctor_order(void)
{
	__th_ctor_forward = true;
}

static inline void __th_register(struct __test_metadata *t)
{
	if (__th_ctor_forward || !__th_head) {
		if (__th_tail)
			__th_tail->next = t;
		else
			__th_head = t;
		__th_tail = t;
	} else {
		t->next = __th_head;
		__th_head = t;
	}
}

static inline const char *__th_name(void)
{
	return __th_current ? __th_current->name : "?";
}

static inline void __attribute__((format(printf, 3, 4)))
__th_log(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("# %s:%d:%s:", file, line, __th_name());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline void __th_mark_failed(void)
{
	if (__th_current)
		__atomic_store_n(&__th_current->failed, 1, __ATOMIC_RELAXED);
}

static inline int __th_bail(int is_assert)
{
	if (!is_assert)
		return 0;
	/* longjmp() into another thread's stack would be undefined. */
	if (!__th_current || syscall(SYS_gettid) != __th_main_tid) {
		fflush(stdout);
		_exit(KSFT_FAIL);
	}
	longjmp(__th_env, 1);
}

static inline void __attribute__((format(printf, 1, 2)))
__th_skip(const char *fmt, ...)
{
	char buf[TH_SKIP_REASON_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (__th_current)
		__th_current->skipped = 1;
	if (__th_skip_reason)
		snprintf(__th_skip_reason, TH_SKIP_REASON_LEN, "%s", buf);
	printf("#      SKIP      %s\n", buf);
	fflush(stdout);
}

/* Compares as integers, not as C would after converting both to one type. */
static inline int __th_cmp(unsigned long long a, int a_signed,
			   unsigned long long b, int b_signed)
{
	bool a_neg = a_signed && (long long)a < 0;
	bool b_neg = b_signed && (long long)b < 0;

	if (a_neg != b_neg)
		return a_neg ? -1 : 1;
	/* Same sign: two's complement orders like the unsigned bits. */
	return a < b ? -1 : a > b;
}

static inline void __th_fmt_val(char *buf, size_t len, unsigned long long v,
				int is_signed)
{
	if (is_signed)
		snprintf(buf, len, "%lld", (long long)v);
	else if (v < 10)
		snprintf(buf, len, "%llu", v);
	else
		snprintf(buf, len, "%llu = 0x%llx", v, v);
}

static inline int __th_cmp_failed(const char *file, int line, int op,
				  const char *e_str, unsigned long long e,
				  int e_signed, const char *s_str,
				  unsigned long long s, int s_signed)
{
	static const char *const op_str[] = { "==", "!=", "<", "<=", ">", ">=" };
	int c = __th_cmp(e, e_signed, s, s_signed);
	char e_buf[48], s_buf[48];
	bool ok = false;

	switch (op) {
	case __TH_EQ: ok = c == 0; break;
	case __TH_NE: ok = c != 0; break;
	case __TH_LT: ok = c < 0; break;
	case __TH_LE: ok = c <= 0; break;
	case __TH_GT: ok = c > 0; break;
	case __TH_GE: ok = c >= 0; break;
	}
	if (ok)
		return 0;
	__th_fmt_val(e_buf, sizeof(e_buf), e, e_signed);
	__th_fmt_val(s_buf, sizeof(s_buf), s, s_signed);
	printf("# %s:%d:Expected %s (%s) %s %s (%s)\n", file, line,
	       e_str, e_buf, op_str[op], s_str, s_buf);
	fflush(stdout);
	__th_mark_failed();
	return 1;
}

static inline int __th_bool_failed(const char *file, int line,
				   const char *str, int val, int want)
{
	if (val == want)
		return 0;
	printf("# %s:%d:Expected %s to be %s\n", file, line, str,
	       want ? "true" : "false");
	fflush(stdout);
	__th_mark_failed();
	return 1;
}

static inline int __th_ptr_failed(const char *file, int line, const char *str,
				  const void *ptr, int want_null)
{
	if (!ptr == !!want_null)
		return 0;
	printf("# %s:%d:Expected %s (%p) to be %s\n", file, line, str, ptr,
	       want_null ? "NULL" : "non-NULL");
	fflush(stdout);
	__th_mark_failed();
	return 1;
}

static inline int __th_errno_failed(const char *file, int line,
				    const char *expr, const char *err_str,
				    long ret, int seen, int want)
{
	if (ret == -1 && seen == want)
		return 0;
	if (ret == -1)
		printf("# %s:%d:Expected %s to fail with %s (%d), got errno %d (%s)\n",
		       file, line, expr, err_str, want, seen, strerror(seen));
	else
		printf("# %s:%d:Expected %s to fail with %s (%d), but it returned %ld\n",
		       file, line, expr, err_str, want, ret);
	fflush(stdout);
	__th_mark_failed();
	return 1;
}

static inline void __attribute__((noreturn))
__th_child(struct __test_metadata *t)
{
	void *self;

	/* Lines get out even if the test dies from a signal. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	__th_current = t;
	__th_main_tid = syscall(SYS_gettid);
	self = calloc(1, t->self_size ? t->self_size : 1);
	if (!self) {
		printf("# %s: out of memory\n", t->name);
		exit(KSFT_FAIL);
	}
	if (!setjmp(__th_env)) {
		if (t->setup)
			t->setup(t, self);
		t->setup_done = 1;
		if (!t->failed && !t->skipped)
			t->body(t, self);
	}
	/* Teardown only undoes a setup that completed, as in kselftest. */
	if (t->setup_done && t->teardown && !setjmp(__th_env))
		t->teardown(t, self);
	fflush(stdout);
	exit(t->failed ? KSFT_FAIL : t->skipped ? KSFT_SKIP : KSFT_PASS);
}

static inline double __th_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs @t in a child; returns its KSFT_* verdict. */
static inline int __th_run_one(struct __test_metadata *t, unsigned int timeout)
{
	sigset_t chld, old;
	bool timed_out = false;
	double deadline;
	int status = 0;
	pid_t pid;

	/* SIGCHLD stays pending while blocked: sigtimedwait() is the timer. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	__th_skip_reason[0] = '\0';
	fflush(stdout);
	fflush(stderr);

	pid = fork();
	if (pid < 0) {
		printf("# %s: fork: %s\n", t->name, strerror(errno));
		sigprocmask(SIG_SETMASK, &old, NULL);
		return KSFT_FAIL;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* Own process group: a timeout kills whatever the test forked. */
		setpgid(0, 0);
		__th_child(t);
	}
	setpgid(pid, pid);

	deadline = __th_now() + timeout;
	for (;;) {
		struct timespec ts;
		double left;
		pid_t w;

		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			printf("# %s: waitpid: %s\n", t->name, strerror(errno));
			sigprocmask(SIG_SETMASK, &old, NULL);
			return KSFT_FAIL;
		}
		left = deadline - __th_now();
		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			timed_out = true;
			break;
		}
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
		sigtimedwait(&chld, NULL, &ts);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);

	if (timed_out) {
		printf("# %s: Test terminated by timeout (%u s)\n", t->name,
		       timeout);
		return KSFT_FAIL;
	}
	if (WIFSIGNALED(status)) {
		printf("# %s: Test terminated unexpectedly by signal %d (%s)\n",
		       t->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
		return KSFT_FAIL;
	}
	switch (WEXITSTATUS(status)) {
	case KSFT_PASS:
	case KSFT_SKIP:
		return WEXITSTATUS(status);
	case KSFT_FAIL:
		return KSFT_FAIL;
	default:
		printf("# %s: Test exited with unexpected status %d\n",
		       t->name, WEXITSTATUS(status));
		return KSFT_FAIL;
	}
}

static inline bool __th_selected(const struct __test_metadata *t,
				 char **filters, int nr_filters)
{
	char full[256];
	int i;

	if (!nr_filters)
		return true;
	snprintf(full, sizeof(full), "%s.%s", t->fixture, t->name);
	for (i = 0; i < nr_filters; i++)
		if (!strcmp(filters[i], full) || !strcmp(filters[i], t->name))
			return true;
	return false;
}

static inline void __th_usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [-l] [-t TEST]...\n"
		"  -l        list the tests\n"
		"  -t TEST   run only TEST (\"fixture.test\" or \"test\"); repeatable\n",
		argv0);
}

static inline int __th_run(int argc, char **argv)
{
	unsigned int total = 0, cases = 0, pass = 0, fail = 0, skip = 0, k = 0;
	char **filters = calloc(argc, sizeof(*filters));
	struct __test_metadata *t, *u;
	unsigned long env_timeout = 0;
	int nr_filters = 0, opt;
	bool list = false;
	const char *env;

	if (!filters)
		return KSFT_FAIL;
	while ((opt = getopt(argc, argv, "hlt:")) != -1) {
		switch (opt) {
		case 'l':
			list = true;
			break;
		case 't':
			filters[nr_filters++] = optarg;
			break;
		case 'h':
			__th_usage(argv[0]);
			return KSFT_PASS;
		default:
			__th_usage(argv[0]);
			return KSFT_FAIL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0],
			argv[optind]);
		__th_usage(argv[0]);
		return KSFT_FAIL;
	}

	for (t = __th_head; t; t = t->next) {
		if (!__th_selected(t, filters, nr_filters))
			continue;
		if (list)
			printf("%s.%s\n", t->fixture, t->name);
		total++;
		for (u = __th_head; u != t; u = u->next)
			if (__th_selected(u, filters, nr_filters) &&
			    !strcmp(u->fixture, t->fixture))
				break;
		cases += u == t;
	}
	if (list)
		return KSFT_PASS;
	if (nr_filters && !total) {
		/* A typo in -t must not pass as an empty, green run. */
		fprintf(stderr, "%s: no test matches", argv[0]);
		for (int i = 0; i < nr_filters; i++)
			fprintf(stderr, " '%s'", filters[i]);
		fprintf(stderr, "\n");
		return KSFT_FAIL;
	}

	env = getenv("VMRESET_TEST_TIMEOUT");
	if (env) {
		char *end;

		env_timeout = strtoul(env, &end, 0);
		if (*end || !env_timeout) {
			fprintf(stderr, "%s: bad VMRESET_TEST_TIMEOUT '%s'\n",
				argv[0], env);
			return KSFT_FAIL;
		}
	}

	__th_skip_reason = mmap(NULL, TH_SKIP_REASON_LEN, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (__th_skip_reason == MAP_FAILED) {
		perror("mmap");
		return KSFT_FAIL;
	}

	printf("TAP version 13\n");
	printf("1..%u\n", total);
	printf("# Starting %u tests from %u test cases.\n", total, cases);
	for (t = __th_head; t; t = t->next) {
		unsigned int timeout;
		int ret;

		if (!__th_selected(t, filters, nr_filters))
			continue;
		timeout = env_timeout ? env_timeout :
			  t->timeout ? t->timeout : TH_DEFAULT_TIMEOUT;
		k++;
		printf("#  RUN           %s.%s ...\n", t->fixture, t->name);
		ret = __th_run_one(t, timeout);
		__th_skip_reason[TH_SKIP_REASON_LEN - 1] = '\0';
		if (ret == KSFT_FAIL) {
			fail++;
			printf("#          FAIL  %s.%s\n", t->fixture, t->name);
			printf("not ok %u %s.%s\n", k, t->fixture, t->name);
		} else if (ret == KSFT_SKIP) {
			skip++;
			printf("#            OK  %s.%s\n", t->fixture, t->name);
			printf("ok %u %s.%s # SKIP %s\n", k, t->fixture, t->name,
			       __th_skip_reason);
		} else {
			pass++;
			printf("#            OK  %s.%s\n", t->fixture, t->name);
			printf("ok %u %s.%s\n", k, t->fixture, t->name);
		}
	}
	printf("# %s: %u / %u tests passed.\n", fail ? "FAILED" : "PASSED",
	       pass + skip, total);
	printf("# Totals: pass:%u fail:%u xfail:0 xpass:0 skip:%u error:0\n",
	       pass, fail, skip);
	fflush(stdout);
	free(filters);

	if (fail)
		return KSFT_FAIL;
	return total && skip == total ? KSFT_SKIP : KSFT_PASS;
}

#endif /* VMRESET_SELFTEST_HARNESS_H */
