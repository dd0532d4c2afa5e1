// SPDX-License-Identifier: GPL-2.0
/*
 * rados.c - the Ceph RADOS backend: a store at rados://POOL[/NAMESPACE]
 *
 * Objects, all in one RADOS namespace of the pool (NAMESPACE, default
 * the pool's default namespace), so a listing sees only this store:
 *
 *   head         data: the policy (as STORE/policy); omap "m:<name>" ->
 *                the hex id of that snapshot's manifest object
 *   index.NN     NN = 00..S-1, the block index in S shards (the policy's
 *                index_shards, 32 when it has none), an ID in shard
 *                (id[0] | id[1] << 8) % S: omap hex(id) -> (pack, offset,
 *                length); xattr vmrs.keys = how many entries it holds (an
 *                upper bound between gc runs, exact after one)
 *   index.G.NN   the same after reshard G (the policy's index_gen; a
 *                resharded store's policy is version 3, which tools from
 *                before reshard refuse instead of using index.NN)
 *   pack.<hex>   sealed blocks back to back, written once (write_full,
 *                at most VMRS_RADOS_PACK bytes) and never changed
 *   man.<hex>    a manifest, written once; "m:<name>" switching to it is
 *                the commit
 *
 * Concurrency (docs/store.md, "RADOS"): every command takes the
 * cls_lock lock "vmreset-store" on head and on every index shard - shared
 * for save, load, list, verify and delete, exclusive for gc and reshard -
 * with a duration, renewed by a thread. Head is locked first and the
 * policy read under that lock, so the shards it names cannot be switched
 * by a reshard until the command lets go. Every write that makes data
 * reachable (index entries, a manifest's name) is one RADOS operation on
 * the locked object that starts with cls_lock's assert_locked: an OSD
 * applies it atomically only while this client still holds the lock. A save that
 * was stopped for longer than the lock's duration (or whose host died)
 * has lost its lock, and gc may have run; its late writes are refused,
 * so gc never frees a block a manifest is about to name.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <rados/librados.h>

#include "store.h"
#include "util.h"

#define NSHARD_LEGACY	32	/* stores whose policy names no index_shards */
#define NSHARD_MAX	4096
/*
 * Ceph reports an object with more omap keys than this at deep scrub
 * (osd_deep_scrub_large_omap_object_key_threshold; HEALTH_WARN), and one
 * shard lives in one PG: a commit that would take a shard past it is
 * refused (VMRESET_STORE_RADOS_SHARD_KEYS overrides).
 */
#define SHARD_KEYS_DEF	200000
#define KEYS_XATTR	"vmrs.keys"
#define LOCK_NAME	"vmreset-store"
#define MLOCK_NAME	"vmreset-store-manifests"
#define LOCK_TAG	"vmrs"
#define PAGE_KEYS	1000
#define IDX_VAL		24
#define CLS_LOCK_EXCLUSIVE 1
#define CLS_LOCK_SHARED	2

/*
 * librados is loaded when a rados:// store is first used, not linked: the
 * tool (and the test VM's initramfs, which carries it) needs no Ceph
 * libraries for directory stores, and a host without librados gets a
 * clear error instead of a binary that does not start.
 */
#define RADOS_FUNCS(X) \
	X(rados_aio_create_completion2) \
	X(rados_aio_get_return_value) \
	X(rados_aio_read) \
	X(rados_aio_read_op_operate) \
	X(rados_aio_release) \
	X(rados_aio_wait_for_complete) \
	X(rados_aio_write_op_operate) \
	X(rados_conf_parse_env) \
	X(rados_conf_read_file) \
	X(rados_conf_set) \
	X(rados_connect) \
	X(rados_create2) \
	X(rados_create_read_op) \
	X(rados_create_write_op) \
	X(rados_getxattr) \
	X(rados_ioctx_create) \
	X(rados_ioctx_destroy) \
	X(rados_ioctx_set_namespace) \
	X(rados_list_lockers) \
	X(rados_lock_exclusive) \
	X(rados_lock_shared) \
	X(rados_nobjects_list_close) \
	X(rados_nobjects_list_next) \
	X(rados_nobjects_list_open) \
	X(rados_omap_get_end) \
	X(rados_omap_get_next2) \
	X(rados_read) \
	X(rados_read_op_omap_get_vals2) \
	X(rados_read_op_omap_get_vals_by_keys2) \
	X(rados_read_op_operate) \
	X(rados_release_read_op) \
	X(rados_release_write_op) \
	X(rados_remove) \
	X(rados_shutdown) \
	X(rados_stat) \
	X(rados_unlock) \
	X(rados_write) \
	X(rados_write_full) \
	X(rados_write_op_cmpxattr) \
	X(rados_write_op_create) \
	X(rados_write_op_exec) \
	X(rados_write_op_omap_rm_keys2) \
	X(rados_write_op_omap_set2) \
	X(rados_write_op_operate) \
	X(rados_write_op_setxattr) \
	X(rados_write_op_write_full)

#define RADOS_DECL(f) __typeof__(f) *f;
static struct {
	RADOS_FUNCS(RADOS_DECL)
} L;

static int load_librados(void)
{
	static void *h;

	if (h)
		return 0;
	h = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		vmrs_err("rados:// stores need librados (Debian: librados2): %s", dlerror());
		return -1;
	}
#define RADOS_LOAD(f) \
	if (!(*(void **)&L.f = dlsym(h, #f))) { \
		vmrs_err("librados.so.2 has no %s (Ceph 16 or later is needed)", #f); \
		dlclose(h); \
		h = NULL; \
		return -1; \
	}
	RADOS_FUNCS(RADOS_LOAD)
#undef RADOS_LOAD
	return 0;
}

struct vmrs_rados {
	rados_t cl;
	rados_ioctx_t io;
	bool connected, has_io;
	char url[512], pool[128], ns[128];
	char cookie[33];
	bool exclusive;
	int nlocked;		/* objects of obj_name(0..nshards) locked */
	unsigned int nshards;	/* index shards (the policy's index_shards) */
	unsigned int gen;	/* their generation (index_gen; 0 before any reshard) */
	uint64_t shard_keys;	/* the most entries a shard may hold */
	unsigned int lock_secs, wait_secs, timeout;
	pthread_t hb;
	bool hb_run, hb_busy;	/* hb_busy: a renewal round is running */
	pthread_mutex_t hb_lock;
	pthread_cond_t hb_cond;
	atomic_bool lost;
	bool man_locked;
	struct vmrs_cache *cache;
	atomic_uint_fast64_t fetched;	/* blocks read from RADOS */
};

struct rados_ent {
	uint8_t id[VMRS_HASH_LEN];
	struct vmrs_loc loc;
	bool found;
};

struct rados_reader {
	struct rados_ent *e;
	size_t n, cap;
	/* prefetched blocks: loc -> bytes in buf */
	struct { struct vmrs_loc loc; uint8_t *p; int err; } *b;
	size_t nb, bcap;
	uint8_t *buf;
	size_t buflen;
};

static unsigned int env_uint(const char *name, unsigned int def)
{
	const char *v = getenv(name);
	uint32_t n;

	if (!v || vmr_parse_u32(v, &n))
		return def;
	return n;
}

/*
 * Object i: 0 = head, 1..nshards = index shards of generation @gen (0:
 * index.NN, as stores have always named them; a reshard's: index.G.NN).
 */
static void gen_name(unsigned int gen, int i, char *buf, size_t len)
{
	if (!i)
		snprintf(buf, len, "head");
	else if (!gen)
		snprintf(buf, len, "index.%02d", i - 1);
	else
		snprintf(buf, len, "index.%u.%02d", gen, i - 1);
}

static void obj_name(const struct vmrs_rados *r, int i, char *buf, size_t len)
{
	gen_name(r->gen, i, buf, len);
}

/* For the 32 shards of older stores this is id[0] % 32, as it always was. */
static int shard_of(const struct vmrs_rados *r, const uint8_t *id)
{
	return 1 + (int)((id[0] | (unsigned int)id[1] << 8) % r->nshards);
}

/* The number after "\nKEY " in the policy into @v (left alone if no such line). */
static int policy_u32(const char *policy, const char *key, uint32_t *v)
{
	const char *p = strstr(policy, key);
	char num[16];
	size_t l;

	if (!p)
		return 0;
	p += strlen(key);
	l = strcspn(p, "\n");
	if (!l || l >= sizeof(num))
		return -1;
	memcpy(num, p, l);
	num[l] = 0;
	return vmr_parse_u32(num, v) ? -1 : 0;
}

/*
 * The policy's "index_shards N" (32 if it has none: stores made before it)
 * and "index_gen G" (0 if none: never resharded).
 */
static int policy_shards(const char *policy, unsigned int *n, unsigned int *gen)
{
	uint32_t v = NSHARD_LEGACY, g = 0;

	if (policy_u32(policy, "\nindex_shards ", &v) || !v || v > NSHARD_MAX || (v & (v - 1)) ||
	    policy_u32(policy, "\nindex_gen ", &g) || g > 1000000)
		return -1;
	*n = v;
	*gen = g;
	return 0;
}

static const char *rerr(int rc)
{
	if (rc == -ETIMEDOUT)
		return "timed out (cluster unreachable?)";
	if (rc == -ESHUTDOWN)	/* EBLOCKLISTED */
		return "this client was blocklisted (fenced) by the cluster";
	return strerror(-rc);
}

bool vmrs_is_rados(const char *store)
{
	return !strncmp(store, "rados://", 8);
}

/* rados://POOL[/NAMESPACE]: names without '/', spaces or control characters. */
static int parse_url(const char *url, char *pool, size_t plen, char *ns, size_t nlen)
{
	const char *p = url + 8, *slash = strchr(p, '/');
	size_t pl = slash ? (size_t)(slash - p) : strlen(p);
	const char *n = slash ? slash + 1 : "";

	if (!pl || pl >= plen || strlen(n) >= nlen || (slash && !*n) || strchr(n, '/'))
		return -1;
	for (const char *c = p; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			return -1;
	memcpy(pool, p, pl);
	pool[pl] = 0;
	snprintf(ns, nlen, "%s", n);
	return 0;
}

static void r_free(struct vmrs_rados *r)
{
	if (r->has_io)
		L.rados_ioctx_destroy(r->io);
	if (r->connected)
		L.rados_shutdown(r->cl);
	free(r);
}

static struct vmrs_rados *r_connect_url(const char *url)
{
	struct vmrs_rados *r = calloc(1, sizeof(*r));
	char tmo[32];
	int rc;

	if (!r)
		return NULL;
	if (load_librados()) {
		free(r);
		return NULL;
	}
	snprintf(r->url, sizeof(r->url), "%s", url);
	if (parse_url(url, r->pool, sizeof(r->pool), r->ns, sizeof(r->ns))) {
		vmrs_err("bad RADOS store '%s': expected rados://POOL or rados://POOL/NAMESPACE",
			 url);
		free(r);
		return NULL;
	}
	r->timeout = env_uint("VMRESET_STORE_RADOS_TIMEOUT", 30);
	r->lock_secs = env_uint("VMRESET_STORE_RADOS_LOCK_SECS", 30);
	r->wait_secs = env_uint("VMRESET_STORE_RADOS_WAIT", 600);
	if (r->lock_secs < 2)
		r->lock_secs = 2;
	rc = L.rados_create2(&r->cl, "ceph", "client.admin", 0);
	if (rc) {
		vmrs_err("'%s': rados_create: %s", url, strerror(-rc));
		free(r);
		return NULL;
	}
	/* ceph.conf and keyring the usual way: $CEPH_CONF, /etc/ceph; $CEPH_ARGS overrides. */
	rc = L.rados_conf_read_file(r->cl, NULL);
	if (rc && getenv("CEPH_CONF")) {
		vmrs_err("'%s': reading $CEPH_CONF '%s': %s", url, getenv("CEPH_CONF"),
			 strerror(-rc));
		goto err;
	}
	rc = L.rados_conf_parse_env(r->cl, NULL);
	if (rc) {
		vmrs_err("'%s': $CEPH_ARGS: %s", url, strerror(-rc));
		goto err;
	}
	/* Bounded waits everywhere: an unreachable cluster is an error, not a hang. */
	snprintf(tmo, sizeof(tmo), "%u", r->timeout);
	L.rados_conf_set(r->cl, "client_mount_timeout", tmo);
	L.rados_conf_set(r->cl, "rados_mon_op_timeout", tmo);
	L.rados_conf_set(r->cl, "rados_osd_op_timeout", tmo);
	L.rados_conf_set(r->cl, "log_to_stderr", "false");
	L.rados_conf_set(r->cl, "err_to_stderr", "false");
	rc = L.rados_connect(r->cl);
	if (rc) {
		vmrs_err("'%s': cannot connect to the Ceph cluster: %s (ceph.conf from $CEPH_CONF "
			 "or /etc/ceph/ceph.conf; waited at most %u s)", url,
			 rc == -ETIMEDOUT ? "timed out" : rc == -ENOENT ?
			 "no monitor address (no ceph.conf found?)" : strerror(-rc), r->timeout);
		goto err;
	}
	r->connected = true;
	rc = L.rados_ioctx_create(r->cl, r->pool, &r->io);
	if (rc) {
		vmrs_err("'%s': pool '%s': %s", url, r->pool, rc == -ENOENT ?
			 "no such pool (create it: ceph osd pool create POOL)" : rerr(rc));
		r_free(r);
		return NULL;
	}
	r->has_io = true;
	L.rados_ioctx_set_namespace(r->io, r->ns);
	return r;
err:
	L.rados_shutdown(r->cl);
	free(r);
	return NULL;
}

int vmrs_rados_init(const char *url, const char *policy, size_t len)
{
	struct vmrs_rados *r = r_connect_url(url);
	rados_write_op_t op;
	char name[32];
	int rc;

	if (!r)
		return -1;
	if (policy_shards(policy, &r->nshards, &r->gen)) {
		r_free(r);
		return -1;
	}
	/* The index shards first: head's presence means "initialised". */
	for (int i = 1; i <= (int)r->nshards; i++) {
		obj_name(r, i, name, sizeof(name));
		op = L.rados_create_write_op();
		L.rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, NULL);
		L.rados_write_op_setxattr(op, KEYS_XATTR, "0", 1);
		rc = L.rados_write_op_operate(op, r->io, name, NULL, 0);
		L.rados_release_write_op(op);
		if (rc) {
			vmrs_err("init '%s': creating '%s': %s", url, name, rerr(rc));
			r_free(r);
			return -1;
		}
	}
	op = L.rados_create_write_op();
	L.rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	L.rados_write_op_write_full(op, policy, len);
	rc = L.rados_write_op_operate(op, r->io, "head", NULL, 0);
	L.rados_release_write_op(op);
	if (rc)
		vmrs_err("init '%s': %s", url, rc == -EEXIST ? "already a store" : rerr(rc));
	r_free(r);
	return rc ? -1 : 0;
}

/* cls_lock's assert_locked input: ENCODE_START(1, 1) name, type, cookie, tag. */
static size_t assert_in(const struct vmrs_rados *r, const char *lock, uint8_t type,
			const char *tag, char *out)
{
	char *p = out + 6;
	uint32_t l;

#define PUT_STR(s) do { l = (uint32_t)strlen(s); memcpy(p, &l, 4); memcpy(p + 4, s, l); \
			p += 4 + l; } while (0)
	PUT_STR(lock);
	*p++ = (char)type;
	PUT_STR(r->cookie);
	PUT_STR(tag);
#undef PUT_STR
	out[0] = 1;
	out[1] = 1;
	l = (uint32_t)(p - out - 6);
	memcpy(out + 2, &l, 4);
	return (size_t)(p - out);
}

/* Adds "this client still holds the store lock on this object". */
static void op_assert_store(struct vmrs_rados *r, rados_write_op_t op, char *buf, int *prval)
{
	size_t n = assert_in(r, LOCK_NAME, r->exclusive ? CLS_LOCK_EXCLUSIVE : CLS_LOCK_SHARED,
			     r->exclusive ? "" : LOCK_TAG, buf);

	L.rados_write_op_exec(op, "lock", "assert_locked", buf, n, prval);
}

static int lock_one(struct vmrs_rados *r, const char *obj, const char *lock, bool excl,
		    unsigned int secs, uint8_t flags)
{
	struct timeval d = { .tv_sec = secs };

	if (excl)
		return L.rados_lock_exclusive(r->io, obj, lock, r->cookie, "vmreset-store", &d,
					    flags);
	return L.rados_lock_shared(r->io, obj, lock, r->cookie, LOCK_TAG, "vmreset-store", &d,
				 flags);
}

static void holders(struct vmrs_rados *r, const char *obj, const char *lock, char *out,
		    size_t len)
{
	char tag[64], clients[1024], cookies[1024], addrs[1024];
	size_t tl = sizeof(tag), cl = sizeof(clients), kl = sizeof(cookies), al = sizeof(addrs);
	int excl = 0;
	ssize_t n = L.rados_list_lockers(r->io, obj, lock, &excl, tag, &tl, clients, &cl,
				       cookies, &kl, addrs, &al);

	if (n <= 0) {
		snprintf(out, len, "?");
		return;
	}
	snprintf(out, len, "%s by %s%s", excl ? "exclusively (gc)" : "shared (saves)", clients,
		 n > 1 ? " and others" : "");
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for the lock, at most wait_secs; a dead holder's lock expires by itself. */
static int lock_wait(struct vmrs_rados *r, const char *obj, const char *lock, bool excl,
		     unsigned int secs)
{
	double t0 = mono();
	bool told = false;
	char who[1200];
	int rc;

	for (;;) {
		rc = lock_one(r, obj, lock, excl, secs, 0);
		if (rc != -EBUSY)
			return rc;
		if (mono() - t0 > r->wait_secs) {
			holders(r, obj, lock, who, sizeof(who));
			vmrs_err("'%s': the store is busy: '%s' locked %s; waited %u s "
				 "(VMRESET_STORE_RADOS_WAIT)", r->url, obj, who, r->wait_secs);
			return -EBUSY;
		}
		if (!told && mono() - t0 > 1) {
			holders(r, obj, lock, who, sizeof(who));
			fprintf(stderr, "vmreset-store: '%s': waiting for the store lock (held %s)\n",
				r->url, who);
			told = true;
		}
		usleep(100000);
	}
}

static void *heartbeat(void *arg)
{
	struct vmrs_rados *r = arg;
	char name[32];
	int n;

	pthread_mutex_lock(&r->hb_lock);
	while (r->hb_run) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += r->lock_secs / 3 ? r->lock_secs / 3 : 1;
		pthread_cond_timedwait(&r->hb_cond, &r->hb_lock, &ts);
		if (!r->hb_run)
			break;
		/* A reshard drops the old shards' locks only between rounds. */
		n = r->nlocked;
		r->hb_busy = true;
		pthread_mutex_unlock(&r->hb_lock);
		/* Lost once, lost for good (and a dead cluster costs one timeout). */
		for (int i = 0; i < n && !atomic_load(&r->lost); i++) {
			obj_name(r, i, name, sizeof(name));
			if (lock_one(r, name, LOCK_NAME, r->exclusive, r->lock_secs,
				     LIBRADOS_LOCK_FLAG_MUST_RENEW))
				atomic_store(&r->lost, true);
		}
		pthread_mutex_lock(&r->hb_lock);
		r->hb_busy = false;
		pthread_cond_broadcast(&r->hb_cond);
	}
	pthread_mutex_unlock(&r->hb_lock);
	return NULL;
}

static void unlock_all(struct vmrs_rados *r)
{
	char name[32];

	if (r->hb_run) {
		pthread_mutex_lock(&r->hb_lock);
		r->hb_run = false;
		pthread_cond_signal(&r->hb_cond);
		pthread_mutex_unlock(&r->hb_lock);
		pthread_join(r->hb, NULL);
		pthread_mutex_destroy(&r->hb_lock);
		pthread_cond_destroy(&r->hb_cond);
	}
	/* An unreachable cluster: the locks expire by themselves. */
	while (r->nlocked > 0) {
		obj_name(r, --r->nlocked, name, sizeof(name));
		if (L.rados_unlock(r->io, name, LOCK_NAME, r->cookie) == -ETIMEDOUT)
			r->nlocked = 0;
	}
}

int vmrs_rados_open(struct vmrs_store *s, const char *url, bool exclusive, char **policy)
{
	struct vmrs_rados *r = r_connect_url(url);
	uint8_t rnd[16];
	uint64_t size = 0;
	char name[32];
	int rc;

	*policy = NULL;
	if (!r)
		return -1;
	s->rados = r;
	r->exclusive = exclusive;
	if (vmrs_random(rnd, sizeof(rnd)))
		return -1;
	vmrs_hex(rnd, sizeof(rnd), r->cookie);
	/* Locking would create head: a missing one must not look like a store. */
	rc = L.rados_stat(r->io, "head", &size, NULL);
	if (rc < 0) {
		vmrs_err("'%s': %s", url, rc == -ENOENT ?
			 "not a store (no 'head' object: vmreset-store init it)" : rerr(rc));
		return -1;
	}
	rc = lock_wait(r, "head", LOCK_NAME, exclusive, r->lock_secs);
	if (rc) {
		if (rc != -EBUSY)
			vmrs_err("'%s': locking 'head': %s", url, rerr(rc));
		return -1;
	}
	r->nlocked = 1;
	/*
	 * The policy names the index shards, and a reshard switches it under
	 * the exclusive lock on head: read under our lock, it cannot change
	 * until we let go (read before it, it could name shards that a
	 * reshard has just removed, and locking one would create it again).
	 */
	rc = L.rados_stat(r->io, "head", &size, NULL);
	if (!rc && size < 4096 && (*policy = calloc(1, size + 1)))
		rc = L.rados_read(r->io, "head", *policy, size, 0);
	if (rc < 0) {
		vmrs_err("'%s': reading the policy: %s", url, rerr(rc));
		return -1;
	}
	if (!*policy)
		return -1;
	if (policy_shards(*policy, &r->nshards, &r->gen)) {
		vmrs_err("'%s': malformed policy (index_shards: a power of two, 1 to %d)", url,
			 NSHARD_MAX);
		return -1;
	}
	r->shard_keys = env_uint("VMRESET_STORE_RADOS_SHARD_KEYS", SHARD_KEYS_DEF);
	for (int i = 1; i <= (int)r->nshards; i++) {
		obj_name(r, i, name, sizeof(name));
		rc = lock_wait(r, name, LOCK_NAME, exclusive, r->lock_secs);
		if (rc) {
			if (rc != -EBUSY)
				vmrs_err("'%s': locking '%s': %s", url, name, rerr(rc));
			return -1;
		}
		r->nlocked = i + 1;
	}
	pthread_mutex_init(&r->hb_lock, NULL);
	pthread_cond_init(&r->hb_cond, NULL);
	r->hb_run = true;
	if (pthread_create(&r->hb, NULL, heartbeat, r)) {
		r->hb_run = false;
		pthread_mutex_destroy(&r->hb_lock);
		pthread_cond_destroy(&r->hb_cond);
		return -1;
	}
	return 0;
}

void vmrs_rados_close(struct vmrs_store *s)
{
	struct vmrs_rados *r = s->rados;

	if (!r)
		return;
	if (r->man_locked)
		L.rados_unlock(r->io, "head", MLOCK_NAME, r->cookie);
	unlock_all(r);
	if (r->cache)
		vmrs_cache_close(r->cache);
	r_free(r);
	s->rados = NULL;
}

void vmrs_rados_set_cache(struct vmrs_store *s, struct vmrs_cache *c)
{
	s->rados->cache = c;
}

bool vmrs_rados_cache_stats(struct vmrs_store *s, uint64_t *hits, uint64_t *misses)
{
	uint64_t bytes;

	if (!s->rados || !s->rados->cache)
		return false;
	vmrs_cache_stats(s->rados->cache, hits, misses, &bytes);
	*misses = atomic_load(&s->rados->fetched);
	return true;
}

const char *vmrs_rados_lost_msg(int rc)
{
	return rc == -EBUSY || rc == -ENOENT ?
	       "lost the store lock (stopped longer than the lock's duration, and gc may have "
	       "run)" : rerr(rc);
}

/* ---- manifests ---- */

static int dir_get(struct vmrs_rados *r, const char *name, char *val, size_t len)
{
	char key[VMRS_MAX_NAME + 3];
	const char *keys[1] = { key };
	size_t klen[1];
	rados_omap_iter_t it;
	rados_read_op_t op = L.rados_create_read_op();
	char *k, *v;
	size_t kl, vl;
	int rc, prval = 0;

	snprintf(key, sizeof(key), "m:%s", name);
	klen[0] = strlen(key);
	L.rados_read_op_omap_get_vals_by_keys2(op, keys, 1, klen, &it, &prval);
	rc = L.rados_read_op_operate(op, r->io, "head", 0);
	if (!rc)
		rc = prval;
	if (!rc) {
		rc = -ENOENT;
		if (!L.rados_omap_get_next2(it, &k, &v, &kl, &vl) && k && vl < len) {
			memcpy(val, v, vl);
			val[vl] = 0;
			rc = 0;
		}
		L.rados_omap_get_end(it);
	}
	L.rados_release_read_op(op);
	return rc;
}

char *vmrs_rados_man_read(struct vmrs_store *s, const char *name, size_t *len)
{
	struct vmrs_rados *r = s->rados;
	char id[40], obj[64], *buf;
	uint64_t size, off = 0;
	int rc = dir_get(r, name, id, sizeof(id));

	if (rc) {
		errno = -rc;
		return NULL;
	}
	snprintf(obj, sizeof(obj), "man.%s", id);
	rc = L.rados_stat(r->io, obj, &size, NULL);
	if (rc) {
		errno = rc == -ENOENT ? EIO : -rc;	/* named but missing: damaged */
		return NULL;
	}
	buf = malloc(size + 1);
	if (!buf) {
		errno = ENOMEM;
		return NULL;
	}
	while (off < size) {
		size_t n = size - off > (64U << 20) ? (64U << 20) : (size_t)(size - off);

		rc = L.rados_read(r->io, obj, buf + off, n, off);
		if (rc <= 0) {
			free(buf);
			errno = rc ? -rc : EIO;
			return NULL;
		}
		off += (uint64_t)rc;
	}
	buf[size] = 0;
	*len = size;
	return buf;
}

bool vmrs_rados_man_exists(struct vmrs_store *s, const char *name)
{
	char id[40];

	return !dir_get(s->rados, name, id, sizeof(id));
}

/* Writes the manifest object, then names it: one operation on head that
 * asserts both locks, so a save that lost its lock never commits. */
/*
 * A write op on "head" that applies only while we hold the store lock and
 * the manifest lock; @a1 and @a2 (256 bytes each) are its arguments and
 * must live until it is operated.
 */
static rados_write_op_t man_op(struct vmrs_rados *r, char *a1, int *p1, char *a2, int *p2)
{
	rados_write_op_t op = L.rados_create_write_op();
	size_t n;

	op_assert_store(r, op, a1, p1);
	n = assert_in(r, MLOCK_NAME, CLS_LOCK_EXCLUSIVE, "", a2);
	L.rados_write_op_exec(op, "lock", "assert_locked", a2, n, p2);
	return op;
}

int vmrs_rados_man_commit(struct vmrs_store *s, const char *name, const void *buf, size_t len)
{
	struct vmrs_rados *r = s->rados;
	char key[VMRS_MAX_NAME + 3], id[17], obj[64], old[40], a1[256], a2[256], oldobj[64];
	const char *keys[1] = { key }, *vals[1] = { id };
	size_t kl[1], vl[1] = { 16 };
	uint8_t rnd[8];
	rados_write_op_t op;
	bool had_old;
	int rc, p1 = 0, p2 = 0;
	size_t n;

	if (vmrs_random(rnd, sizeof(rnd)))
		return -EIO;
	vmrs_hex(rnd, sizeof(rnd), id);
	snprintf(obj, sizeof(obj), "man.%s", id);
	had_old = !dir_get(r, name, old, sizeof(old));
	for (size_t off = 0; off < len || !off; off += n) {
		n = len - off > (64U << 20) ? (64U << 20) : len - off;
		rc = off ? L.rados_write(r->io, obj, (const char *)buf + off, n, off) :
			   L.rados_write_full(r->io, obj, buf, n);
		if (rc) {
			L.rados_remove(r->io, obj);
			return rc;
		}
		if (!len)
			break;
	}
	snprintf(key, sizeof(key), "m:%s", name);
	kl[0] = strlen(key);
	op = man_op(r, a1, &p1, a2, &p2);
	L.rados_write_op_omap_set2(op, keys, vals, kl, vl, 1);
	rc = L.rados_write_op_operate(op, r->io, "head", NULL, 0);
	L.rados_release_write_op(op);
	if (rc) {
		L.rados_remove(r->io, obj);
		return rc;
	}
	if (had_old) {
		snprintf(oldobj, sizeof(oldobj), "man.%s", old);
		L.rados_remove(r->io, oldobj);	/* else gc removes it */
	}
	return 0;
}

int vmrs_rados_man_delete(struct vmrs_store *s, const char *name)
{
	struct vmrs_rados *r = s->rados;
	char key[VMRS_MAX_NAME + 3], old[40], a1[256], a2[256], obj[64];
	const char *keys[1] = { key };
	size_t kl[1];
	rados_write_op_t op;
	int rc, p1 = 0, p2 = 0;

	rc = dir_get(r, name, old, sizeof(old));
	if (rc)
		return rc;
	snprintf(key, sizeof(key), "m:%s", name);
	kl[0] = strlen(key);
	op = man_op(r, a1, &p1, a2, &p2);
	L.rados_write_op_omap_rm_keys2(op, keys, kl, 1);
	rc = L.rados_write_op_operate(op, r->io, "head", NULL, 0);
	L.rados_release_write_op(op);
	if (!rc) {
		snprintf(obj, sizeof(obj), "man.%s", old);
		L.rados_remove(r->io, obj);
	}
	return rc;
}

int vmrs_rados_man_lock(struct vmrs_store *s)
{
	struct vmrs_rados *r = s->rados;
	int rc;

	/* Held for milliseconds; the duration only bounds a dead holder. */
	rc = lock_wait(r, "head", MLOCK_NAME, true, 60);
	if (rc)
		return rc;
	r->man_locked = true;
	return 0;
}

void vmrs_rados_man_unlock(struct vmrs_store *s)
{
	struct vmrs_rados *r = s->rados;

	if (r->man_locked)
		L.rados_unlock(r->io, "head", MLOCK_NAME, r->cookie);
	r->man_locked = false;
}

/*
 * Pages through an object's omap; @fn gets each key/value, @page (if
 * any) runs after each page, before the next is read (gc removes a page's
 * dead keys there).
 */
static int omap_pages(struct vmrs_rados *r, const char *obj, const char *prefix,
		      int (*fn)(void *arg, const char *k, size_t kl, const char *v, size_t vl),
		      int (*page)(void *arg), void *arg)
{
	char after[VMRS_MAX_NAME + 80] = "";
	unsigned char more = 1;
	int rc = 0;

	while (more && !rc) {
		rados_read_op_t op = L.rados_create_read_op();
		rados_omap_iter_t it;
		char *k, *v;
		size_t kl, vl;
		int prval = 0;

		L.rados_read_op_omap_get_vals2(op, after, prval ? NULL : prefix, PAGE_KEYS, &it,
					     &more, &prval);
		rc = L.rados_read_op_operate(op, r->io, obj, 0);
		if (!rc)
			rc = prval;
		if (!rc) {
			while (!rc && !L.rados_omap_get_next2(it, &k, &v, &kl, &vl) && k) {
				rc = fn(arg, k, kl, v, vl);
				if (kl < sizeof(after)) {
					memcpy(after, k, kl);
					after[kl] = 0;
				}
			}
			L.rados_omap_get_end(it);
		}
		L.rados_release_read_op(op);
		if (!rc && page)
			rc = page(arg);
	}
	return rc;
}

static int omap_each(struct vmrs_rados *r, const char *obj, const char *prefix,
		     int (*fn)(void *arg, const char *k, size_t kl, const char *v, size_t vl),
		     void *arg)
{
	return omap_pages(r, obj, prefix, fn, NULL, arg);
}

struct names_acc {
	char **v;
	int n;
};

static int add_name(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	struct names_acc *a = arg;
	char **g = realloc(a->v, (size_t)(a->n + 1) * sizeof(*g));

	(void)v;
	(void)vl;
	if (!g)
		return -ENOMEM;
	a->v = g;
	a->v[a->n] = strndup(k + 2, kl - 2);
	if (!a->v[a->n])
		return -ENOMEM;
	a->n++;
	return 0;
}

int vmrs_rados_man_names(struct vmrs_store *s, char ***names)
{
	struct names_acc a = { 0 };
	int rc = omap_each(s->rados, "head", "m:", add_name, &a);

	if (rc) {
		vmrs_err("'%s': listing snapshots: %s", s->root, rerr(rc));
		vmrs_names_free(a.v, a.n);
		return -1;
	}
	*names = a.v;
	return a.n;	/* omap keys come sorted */
}

/* ---- the index ---- */

void *vmrs_rados_reader(struct vmrs_store *s)
{
	(void)s;
	return calloc(1, sizeof(struct rados_reader));
}

void vmrs_rados_reader_end(void *rtxn)
{
	struct rados_reader *rd = rtxn;

	if (!rd)
		return;
	free(rd->e);
	free(rd->b);
	free(rd->buf);
	free(rd);
}

static int cmp_ent(const void *a, const void *b)
{
	return memcmp(a, b, VMRS_HASH_LEN);
}

static int parse_val(const char *v, size_t vl, struct vmrs_loc *loc)
{
	uint64_t pack, off;
	uint32_t len;

	if (vl != IDX_VAL)
		return -EINVAL;
	memcpy(&pack, v, 8);
	memcpy(&off, v + 8, 8);
	memcpy(&len, v + 16, 4);
	loc->pack = pack;
	loc->off = off;
	loc->len = len;
	return 0;
}

/* One read per shard, all shards at once: a chunk's lookups cost one round trip. */
int vmrs_rados_prefetch(struct vmrs_store *s, void *rtxn, const uint8_t (*ids)[VMRS_HASH_LEN],
			size_t n)
{
	struct vmrs_rados *r = s->rados;
	struct rados_reader *rd = rtxn;
	struct {
		rados_read_op_t op;
		rados_completion_t c;
		rados_omap_iter_t it;
		int prval;
		const char **keys;
		size_t *kl, nk;
	} *sh;
	char (*hex)[2 * VMRS_HASH_LEN + 1];
	char name[32];
	int ret = 0;

	rd->n = 0;
	if (!n)
		return 0;
	if (rd->cap < n) {
		struct rados_ent *g = realloc(rd->e, n * sizeof(*g));

		if (!g)
			return -ENOMEM;
		rd->e = g;
		rd->cap = n;
	}
	hex = malloc(n * sizeof(*hex));
	sh = calloc(r->nshards + 1, sizeof(*sh));
	if (!hex || !sh) {
		free(hex);
		free(sh);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(rd->e[i].id, ids[i], VMRS_HASH_LEN);
		rd->e[i].found = false;
		hex[i][0] = 0;
		/* A load of a block this host has: no round trip for its entry. */
		if (vmrs_cache_ids && r->cache &&
		    !vmrs_cache_id_get(r->cache, ids[i], &rd->e[i].loc)) {
			rd->e[i].found = true;
			continue;
		}
		vmrs_hex(ids[i], VMRS_HASH_LEN, hex[i]);
		sh[shard_of(r, ids[i])].nk++;
	}
	for (int k = 1; k <= (int)r->nshards; k++) {
		if (!sh[k].nk)
			continue;
		sh[k].keys = malloc(sh[k].nk * sizeof(char *));
		sh[k].kl = malloc(sh[k].nk * sizeof(size_t));
		if (!sh[k].keys || !sh[k].kl)
			ret = -ENOMEM;
		sh[k].nk = 0;
	}
	for (size_t i = 0; i < n && !ret; i++) {
		int k = shard_of(r, ids[i]);

		if (!hex[i][0])
			continue;
		sh[k].keys[sh[k].nk] = hex[i];
		sh[k].kl[sh[k].nk++] = 2 * VMRS_HASH_LEN;
	}
	for (int k = 1; k <= (int)r->nshards && !ret; k++) {
		if (!sh[k].nk)
			continue;
		obj_name(r, k, name, sizeof(name));
		sh[k].op = L.rados_create_read_op();
		L.rados_read_op_omap_get_vals_by_keys2(sh[k].op, sh[k].keys, sh[k].nk, sh[k].kl,
						     &sh[k].it, &sh[k].prval);
		ret = L.rados_aio_create_completion2(NULL, NULL, &sh[k].c);
		if (!ret)
			ret = L.rados_aio_read_op_operate(sh[k].op, r->io, sh[k].c, name, 0);
		if (ret && sh[k].c) {
			L.rados_aio_release(sh[k].c);
			sh[k].c = NULL;
		}
	}
	qsort(rd->e, n, sizeof(*rd->e), cmp_ent);
	rd->n = n;
	for (int k = 1; k <= (int)r->nshards; k++) {
		char *key, *v;
		size_t kl, vl;
		int rc;

		if (sh[k].c) {
			L.rados_aio_wait_for_complete(sh[k].c);
			rc = L.rados_aio_get_return_value(sh[k].c);
			if (!rc)
				rc = sh[k].prval;
			if (rc && !ret)
				ret = rc;
			while (!rc && !L.rados_omap_get_next2(sh[k].it, &key, &v, &kl, &vl) && key) {
				uint8_t id[VMRS_HASH_LEN];
				struct rados_ent *e;

				if (kl != 2 * VMRS_HASH_LEN)
					continue;
				char kz[2 * VMRS_HASH_LEN + 1];

				memcpy(kz, key, kl);
				kz[kl] = 0;
				if (vmrs_unhex(kz, id, VMRS_HASH_LEN))
					continue;
				e = bsearch(id, rd->e, n, sizeof(*rd->e), cmp_ent);
				if (e && !parse_val(v, vl, &e->loc)) {
					e->found = true;
					if (vmrs_cache_ids && r->cache)
						vmrs_cache_id_put(r->cache, id, &e->loc);
				}
			}
			if (!rc)
				L.rados_omap_get_end(sh[k].it);
			L.rados_aio_release(sh[k].c);
		}
		if (sh[k].op)
			L.rados_release_read_op(sh[k].op);
		free(sh[k].keys);
		free(sh[k].kl);
	}
	free(hex);
	free(sh);
	if (ret)
		rd->n = 0;
	return ret;
}

int vmrs_rados_get(struct vmrs_store *s, void *rtxn, const uint8_t id[VMRS_HASH_LEN],
		   struct vmrs_loc *loc)
{
	struct rados_reader *rd = rtxn;
	struct rados_ent *e = rd && rd->n ? bsearch(id, rd->e, rd->n, sizeof(*rd->e), cmp_ent) :
				 NULL;
	struct rados_reader one = { 0 };
	int rc;

	if (e) {
		*loc = e->loc;
		return e->found ? 0 : -ENOENT;
	}
	rc = vmrs_rados_prefetch(s, &one, (const uint8_t (*)[VMRS_HASH_LEN])id, 1);
	if (!rc && one.n && one.e[0].found)
		*loc = one.e[0].loc;
	else if (!rc)
		rc = -ENOENT;
	free(one.e);
	return rc ? (rc == -ENOENT ? -ENOENT : rc) : 0;
}

struct count_acc {
	uint64_t n;
};

static int count_one(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	(void)k;
	(void)v;
	(void)vl;
	((struct count_acc *)arg)->n += kl == 2 * VMRS_HASH_LEN;
	return 0;
}

/*
 * A shard's entry count (xattr vmrs.keys) into @n and its text into @raw.
 * A shard of a store made before the count has none: its entries are
 * counted (once: the commit that follows records the count) and @raw is
 * "" (nothing to compare against).
 */
static int shard_count(struct vmrs_rados *r, int k, uint64_t *n, char *raw, size_t len)
{
	struct count_acc a = { 0 };
	char name[32];
	int rc;

	*n = 0;
	raw[0] = 0;
	obj_name(r, k, name, sizeof(name));
	rc = L.rados_getxattr(r->io, name, KEYS_XATTR, raw, len - 1);
	if (rc == -ENODATA) {
		raw[0] = 0;
		rc = omap_each(r, name, NULL, count_one, &a);
		*n = a.n;
		return rc;
	}
	if (rc < 0)
		return rc;
	raw[rc] = 0;
	return vmr_parse_u64(raw, n) ? -EINVAL : 0;
}

static int cmp_ord(const void *a, const void *b)
{
	const uint32_t *x = a, *y = b;

	return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Too many entries for a shard: what to do, with the numbers. */
static void shard_full(struct vmrs_store *s, int k, uint64_t have, uint64_t add)
{
	struct vmrs_rados *r = s->rados;
	char name[32];

	obj_name(r, k, name, sizeof(name));
	vmrs_err("'%s': index shard '%s' holds %" PRIu64 " block entries and this save "
		 "adds %" PRIu64 ": over the bound of %" PRIu64 " per shard (Ceph warns about "
		 "larger omap objects; VMRESET_STORE_RADOS_SHARD_KEYS), so this store's %u shards "
		 "hold about %" PRIu64 " blocks: run gc, or keep new snapshots in a store made with "
		 "'init --index-shards N' or 'reshard --index-shards N' (N = blocks / %" PRIu64
		 ", a power of two); nothing saved",
		 s->root, name, have, add, r->shard_keys, r->nshards,
		 r->shard_keys * r->nshards, r->shard_keys);
}

/*
 * Shard by shard, at most PAGE_KEYS entries per operation. Each operation
 * asserts the store lock, compares the shard's count with what it was
 * read as and sets it to that plus the new entries, so two hosts adding
 * at once never lose an increment (-ECANCELED: read it again). Entries
 * that replace a damaged copy are not new; two hosts storing the same
 * new block both count it, so between gc runs the count is an upper
 * bound. Every shard's bound is checked before anything is written.
 */
int vmrs_rados_commit(struct vmrs_store *s, const struct vmrs_newblock *nb, uint64_t n)
{
	struct vmrs_rados *r = s->rados;
	char (*hex)[2 * VMRS_HASH_LEN + 1] = malloc((n + 1) * sizeof(*hex));
	char (*val)[IDX_VAL] = malloc((n + 1) * IDX_VAL);
	const char **keys = malloc((n + 1) * sizeof(char *)), **vals = malloc((n + 1) * sizeof(char *));
	size_t *kl = malloc((n + 1) * sizeof(size_t)), *vl = malloc((n + 1) * sizeof(size_t));
	uint32_t (*ord)[2] = malloc((n + 1) * sizeof(*ord));
	uint64_t m = 0;
	int ret = 0;

	if (!hex || !val || !keys || !vals || !kl || !vl || !ord || n > UINT32_MAX) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		ord[i][0] = (uint32_t)shard_of(r, nb[i].id);
		ord[i][1] = (uint32_t)i;
	}
	/* By shard, and in each shard in the callers' (key) order. */
	qsort(ord, n, sizeof(*ord), cmp_ord);
	for (uint64_t b = 0; b < n; b++) {
		const struct vmrs_newblock *e = &nb[ord[b][1]];

		vmrs_hex(e->id, VMRS_HASH_LEN, hex[b]);
		memcpy(val[b], &e->loc.pack, 8);
		memcpy(val[b] + 8, &e->loc.off, 8);
		memcpy(val[b] + 16, &e->loc.len, 4);
		memset(val[b] + 20, 0, 4);
		keys[b] = hex[b];
		vals[b] = val[b];
		kl[b] = 2 * VMRS_HASH_LEN;
		vl[b] = IDX_VAL;
	}
	/* The bound first, for every shard: refused means nothing written. */
	for (uint64_t b = 0, e; b < n && !ret; b = e) {
		uint64_t have, add = 0;
		char raw[32];

		for (e = b; e < n && ord[e][0] == ord[b][0]; e++)
			add += !nb[ord[e][1]].replace;
		ret = shard_count(r, (int)ord[b][0], &have, raw, sizeof(raw));
		if (!ret && add && have + add > r->shard_keys) {
			shard_full(s, (int)ord[b][0], have, add);
			ret = -EFBIG;
		}
	}
	for (uint64_t b = 0; b < n && !ret; b += m) {
		int k = (int)ord[b][0], tries = 0;
		uint64_t have, add = 0;
		char name[32], raw[32], cnt[32];

		for (m = 0; b + m < n && m < PAGE_KEYS && (int)ord[b + m][0] == k; m++)
			add += !nb[ord[b + m][1]].replace;
		obj_name(r, k, name, sizeof(name));
		do {
			rados_write_op_t op;
			rados_completion_t c;
			char a[256];
			int prval = 0;

			ret = shard_count(r, k, &have, raw, sizeof(raw));
			if (ret)
				break;
			if (add && have + add > r->shard_keys) {
				shard_full(s, k, have, add);
				ret = -EFBIG;
				break;
			}
			snprintf(cnt, sizeof(cnt), "%" PRIu64, have + add);
			op = L.rados_create_write_op();
			op_assert_store(r, op, a, &prval);
			/* A shard of an older store has no count yet: nothing to compare. */
			if (raw[0])
				L.rados_write_op_cmpxattr(op, KEYS_XATTR, LIBRADOS_CMPXATTR_OP_EQ, raw,
							  strlen(raw));
			L.rados_write_op_omap_set2(op, keys + b, vals + b, kl + b, vl + b, (size_t)m);
			L.rados_write_op_setxattr(op, KEYS_XATTR, cnt, strlen(cnt));
			ret = L.rados_aio_create_completion2(NULL, NULL, &c);
			if (!ret) {
				ret = L.rados_aio_write_op_operate(op, r->io, c, name, NULL, 0);
				if (!ret) {
					L.rados_aio_wait_for_complete(c);
					ret = L.rados_aio_get_return_value(c);
				}
				L.rados_aio_release(c);
			}
			L.rados_release_write_op(op);
		} while (ret == -ECANCELED && ++tries < 100);
	}
out:
	free(hex);
	free(val);
	free(keys);
	free(vals);
	free(kl);
	free(vl);
	free(ord);
	return ret;
}

/* From the shards' counts; a shard of an older store without one is counted. */
uint64_t vmrs_rados_count(struct vmrs_store *s)
{
	char raw[32];
	uint64_t n, sum = 0;

	for (int k = 1; k <= (int)s->rados->nshards; k++)
		if (!shard_count(s->rados, k, &n, raw, sizeof(raw)))
			sum += n;
	return sum;
}

unsigned int vmrs_rados_shards(const struct vmrs_store *s)
{
	return s->rados->nshards;
}

/* ---- packs and blocks ---- */

/* Created, never replaced: an ID drawn twice must not overwrite a pack. */
int vmrs_rados_pack_put(struct vmrs_store *s, uint64_t pack, const void *buf, size_t len)
{
	rados_write_op_t op = L.rados_create_write_op();
	char obj[64];
	int rc;

	snprintf(obj, sizeof(obj), "pack.%016" PRIx64, pack);
	L.rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	L.rados_write_op_write_full(op, buf, len);
	rc = L.rados_write_op_operate(op, s->rados->io, obj, NULL, 0);
	L.rados_release_write_op(op);
	if (rc == -EEXIST)
		vmrs_err("'%s': pack %016" PRIx64 " already exists (a 64-bit ID drawn twice): it "
			 "is kept, and this save's pack with that ID is dropped", s->root, pack);
	return rc;
}

static int key16(const struct vmrs_loc *loc, uint8_t k[16])
{
	memcpy(k, &loc->pack, 8);
	memcpy(k + 8, &loc->off, 8);
	return 0;
}

/* 0, -ENOENT (no such pack) or -ENODATA (the pack is too short). */
int vmrs_rados_block_read(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *loc,
			  uint8_t *buf, bool fresh)
{
	struct vmrs_rados *r = s->rados;
	struct rados_reader *rd = rtxn;
	uint8_t k[16];
	char obj[64];
	int rc;

	key16(loc, k);
	if (!fresh && rd) {
		for (size_t i = 0; i < rd->nb; i++)
			if (rd->b[i].loc.pack == loc->pack && rd->b[i].loc.off == loc->off &&
			    rd->b[i].loc.len == loc->len) {
				if (rd->b[i].err)
					return rd->b[i].err;
				memcpy(buf, rd->b[i].p, loc->len);
				return 0;
			}
	}
	if (!fresh && r->cache && !vmrs_cache_get(r->cache, k, buf, loc->len))
		return 0;
	if (fresh && r->cache)
		vmrs_cache_drop(r->cache, k);
	snprintf(obj, sizeof(obj), "pack.%016" PRIx64, loc->pack);
	rc = L.rados_read(r->io, obj, (char *)buf, loc->len, loc->off);
	if (rc < 0)
		return rc;
	if ((uint32_t)rc != loc->len)
		return -ENODATA;
	atomic_fetch_add(&r->fetched, 1);
	if (r->cache)
		vmrs_cache_put(r->cache, k, buf, loc->len);
	return 0;
}

static int cmp_loc(const void *a, const void *b)
{
	const struct vmrs_loc *x = a, *y = b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * Fetches a chunk's blocks that are not in the host cache, one read per
 * run of adjacent blocks of a pack, all reads in flight at once.
 */
int vmrs_rados_block_prefetch(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *locs,
			      size_t n)
{
	struct vmrs_rados *r = s->rados;
	struct rados_reader *rd = rtxn;
	struct vmrs_loc *v = malloc((n + 1) * sizeof(*v));
	struct run {
		uint64_t pack, off;
		size_t len, first, last;
		rados_completion_t c;
	} *runs = malloc((n + 1) * sizeof(*runs));
	size_t nv = 0, nr = 0, total = 0, pos = 0;
	int ret = 0;

	rd->nb = 0;
	if (!v || !runs) {
		free(v);
		free(runs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t k[16];

		key16(&locs[i], k);
		if (r->cache && vmrs_cache_has(r->cache, k))
			continue;
		v[nv++] = locs[i];
	}
	if (nv)
		qsort(v, nv, sizeof(*v), cmp_loc);
	for (size_t i = 0; i < nv; i++) {
		if (nr && runs[nr - 1].pack == v[i].pack &&
		    runs[nr - 1].off + runs[nr - 1].len == v[i].off) {
			runs[nr - 1].len += v[i].len;
			runs[nr - 1].last = i;
		} else if (nr && runs[nr - 1].pack == v[i].pack &&
			   runs[nr - 1].off + runs[nr - 1].len > v[i].off) {
			continue;	/* a duplicate location */
		} else {
			runs[nr++] = (struct run){ v[i].pack, v[i].off, v[i].len, i, i, NULL };
		}
		total += v[i].len;
	}
	if (rd->buflen < total) {
		free(rd->buf);
		rd->buf = malloc(total);
		rd->buflen = rd->buf ? total : 0;
	}
	if (rd->bcap < nv) {
		void *g = realloc(rd->b, nv * sizeof(*rd->b));

		if (g) {
			rd->b = g;
			rd->bcap = nv;
		}
	}
	if ((total && !rd->buf) || rd->bcap < nv) {
		free(v);
		free(runs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nr; i++) {
		char obj[64];

		snprintf(obj, sizeof(obj), "pack.%016" PRIx64, runs[i].pack);
		runs[i].c = NULL;
		if (L.rados_aio_create_completion2(NULL, NULL, &runs[i].c) ||
		    L.rados_aio_read(r->io, obj, runs[i].c, (char *)rd->buf + pos, runs[i].len,
				   runs[i].off)) {
			if (runs[i].c)
				L.rados_aio_release(runs[i].c);
			runs[i].c = NULL;
			ret = -EIO;
		}
		pos += runs[i].len;
	}
	pos = 0;
	for (size_t i = 0; i < nr; i++) {
		int rc = -EIO;

		if (runs[i].c) {
			L.rados_aio_wait_for_complete(runs[i].c);
			rc = L.rados_aio_get_return_value(runs[i].c);
			L.rados_aio_release(runs[i].c);
		}
		for (size_t k = runs[i].first, o = 0; k <= runs[i].last; k++) {
			uint8_t key[16];

			if (k > runs[i].first && v[k].off < v[k - 1].off + v[k - 1].len)
				continue;
			rd->b[rd->nb].loc = v[k];
			rd->b[rd->nb].p = rd->buf + pos + o;
			rd->b[rd->nb].err = rc < 0 ? rc : (size_t)rc < o + v[k].len ?
					    -ENODATA : 0;
			if (!rd->b[rd->nb].err)
				atomic_fetch_add(&r->fetched, 1);
			if (!rd->b[rd->nb].err && r->cache) {
				key16(&v[k], key);
				vmrs_cache_put(r->cache, key, rd->b[rd->nb].p, v[k].len);
			}
			rd->nb++;
			o += v[k].len;
		}
		pos += runs[i].len;
	}
	free(v);
	free(runs);
	return ret;
}

/* ---- gc ---- */

struct pack_live {
	uint64_t pack, live;
};

struct gc_acc {
	struct vmrs_rados *r;
	struct vmrs_live *live;
	struct pack_live *pl;
	size_t npl, cap, merged;
	char (*rm)[2 * VMRS_HASH_LEN + 1];
	size_t nrm;
	const char *obj;	/* the shard being read */
	uint64_t kept;		/* its live entries */
	struct vmrs_gc_stats *st;
	int err;
};

static int gc_entry(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	struct gc_acc *a = arg;
	char kz[2 * VMRS_HASH_LEN + 1];
	uint8_t id[VMRS_HASH_LEN];
	struct vmrs_loc loc;
	int lv;

	if (kl != 2 * VMRS_HASH_LEN)
		return 0;
	memcpy(kz, k, kl);
	kz[kl] = 0;
	if (vmrs_unhex(kz, id, VMRS_HASH_LEN))
		return 0;
	lv = vmrs_live_has(a->live, id);
	if (lv < 0)
		return -EIO;	/* not knowing what is live, remove nothing more */
	if (lv && !parse_val(v, vl, &loc)) {
		if (a->npl == a->cap) {
			size_t cap = a->cap ? 2 * a->cap : 1024;
			struct pack_live *g = realloc(a->pl, cap * sizeof(*g));

			if (!g)
				return -ENOMEM;
			a->pl = g;
			a->cap = cap;
		}
		a->pl[a->npl++] = (struct pack_live){ loc.pack, loc.len };
		a->st->blocks_kept++;
		a->kept++;
		return 0;
	}
	memcpy(a->rm[a->nrm++], kz, sizeof(kz));
	return 0;
}

static int cmp_pl(const void *x, const void *y)
{
	const struct pack_live *a = x, *b = y;

	return a->pack < b->pack ? -1 : a->pack > b->pack;
}

/* One (pack, live bytes) per pack: memory follows packs, not live blocks. */
static void merge_pl(struct gc_acc *a)
{
	size_t j = 0;

	if (a->npl)
		qsort(a->pl, a->npl, sizeof(*a->pl), cmp_pl);
	for (size_t i = 0; i < a->npl; i++)
		if (!j || a->pl[i].pack != a->pl[j - 1].pack)
			a->pl[j++] = a->pl[i];
		else
			a->pl[j - 1].live += a->pl[i].live;
	a->npl = a->merged = j;
}

static int rm_keys(struct gc_acc *a, const char *obj)
{
	const char *keys[PAGE_KEYS];
	size_t kl[PAGE_KEYS];
	rados_write_op_t op;
	char buf[256];
	int prval = 0, rc;

	if (!a->nrm)
		return 0;
	for (size_t i = 0; i < a->nrm; i++) {
		keys[i] = a->rm[i];
		kl[i] = 2 * VMRS_HASH_LEN;
	}
	op = L.rados_create_write_op();
	op_assert_store(a->r, op, buf, &prval);
	L.rados_write_op_omap_rm_keys2(op, keys, kl, a->nrm);
	rc = L.rados_write_op_operate(op, a->r->io, obj, NULL, 0);
	L.rados_release_write_op(op);
	if (!rc)
		a->st->blocks_removed += a->nrm;
	a->nrm = 0;
	return rc;
}

static int gc_page(void *arg)
{
	struct gc_acc *a = arg;

	if (a->npl > 2 * a->merged + 65536)
		merge_pl(a);
	return rm_keys(a, a->obj);
}

/* Under the exclusive lock, after gc read the whole shard: its exact count. */
static int set_count(struct gc_acc *a, const char *obj, uint64_t n)
{
	rados_write_op_t op = L.rados_create_write_op();
	char buf[256], cnt[32];
	int prval = 0, rc;

	snprintf(cnt, sizeof(cnt), "%" PRIu64, n);
	op_assert_store(a->r, op, buf, &prval);
	L.rados_write_op_setxattr(op, KEYS_XATTR, cnt, strlen(cnt));
	rc = L.rados_write_op_operate(op, a->r->io, obj, NULL, 0);
	L.rados_release_write_op(op);
	return rc;
}


struct dir_acc {
	char (*ids)[17];
	size_t n;
};

static int add_dir(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	struct dir_acc *a = arg;
	void *g;

	(void)k;
	(void)kl;
	if (vl != 16)
		return 0;
	g = realloc(a->ids, (a->n + 1) * sizeof(*a->ids));
	if (!g)
		return -ENOMEM;
	a->ids = g;
	memcpy(a->ids[a->n], v, 16);
	a->ids[a->n++][16] = 0;
	return 0;
}

static int cmp_str17(const void *a, const void *b)
{
	return strcmp(a, b);
}

struct rw_pack {
	uint64_t pack, size, live;
	bool bad;		/* unreadable or short: left as it is */
};

struct rw_acc {
	struct rw_pack *p;
	size_t np;
	struct vmrs_newblock *nb;
	size_t n, cap;
};

static int cmp_rw(const void *x, const void *y)
{
	const struct rw_pack *a = x, *b = y;

	return a->pack < b->pack ? -1 : a->pack > b->pack;
}

/* The entries (all live by now) that point into a pack being rewritten. */
static int rw_entry(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	struct rw_acc *a = arg;
	char kz[2 * VMRS_HASH_LEN + 1];
	struct rw_pack key;
	struct vmrs_loc loc;

	if (kl != 2 * VMRS_HASH_LEN || parse_val(v, vl, &loc))
		return 0;
	key.pack = loc.pack;
	if (!bsearch(&key, a->p, a->np, sizeof(key), cmp_rw))
		return 0;
	memcpy(kz, k, kl);
	kz[kl] = 0;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 1024;
		struct vmrs_newblock *g = realloc(a->nb, cap * sizeof(*g));

		if (!g)
			return -ENOMEM;
		a->nb = g;
		a->cap = cap;
	}
	if (vmrs_unhex(kz, a->nb[a->n].id, VMRS_HASH_LEN))
		return 0;
	a->nb[a->n].loc = loc;
	a->nb[a->n++].replace = true;
	return 0;
}

static int cmp_nb_loc(const void *x, const void *y)
{
	const struct vmrs_newblock *a = x, *b = y;

	if (a->loc.pack != b->loc.pack)
		return a->loc.pack < b->loc.pack ? -1 : 1;
	return a->loc.off < b->loc.off ? -1 : a->loc.off > b->loc.off;
}

/*
 * A pack is at most 4 MiB and written once, so one live block kept it
 * whole: the space a store used was bounded only by its live blocks
 * times the pack size. As in a directory store, packs under half live
 * are rewritten: their live blocks are copied, still sealed (no key), to
 * new packs (write_full), the index entries switched in one assert-locked
 * operation per shard batch, and only then the old packs removed. Killed
 * in between, gc leaves unreferenced new packs, or old ones, for the
 * next gc to remove; an index entry always points at a whole copy.
 */
static int rewrite_packs(struct vmrs_store *s, struct rw_pack *p, size_t np,
			 struct vmrs_gc_stats *st)
{
	struct vmrs_rados *r = s->rados;
	struct rw_acc a = { .p = p, .np = np };
	struct vmrs_pack_writer w = { .s = s };
	uint8_t *buf = malloc(VMRS_RADOS_PACK + VMRS_MAX_BLOCK + VMRS_TAG_LEN);
	char name[32], obj[64];
	size_t n = 0;
	int rc = buf ? 0 : -ENOMEM;

	qsort(p, np, sizeof(*p), cmp_rw);
	for (int k = 1; k <= (int)r->nshards && !rc; k++) {
		obj_name(r, k, name, sizeof(name));
		rc = omap_each(r, name, NULL, rw_entry, &a);
	}
	if (a.n)
		qsort(a.nb, a.n, sizeof(*a.nb), cmp_nb_loc);
	for (size_t i = 0, e; i < a.n && !rc; i = e) {
		struct rw_pack key = { .pack = a.nb[i].loc.pack }, *pk;
		int got;

		pk = bsearch(&key, p, np, sizeof(key), cmp_rw);
		for (e = i; e < a.n && a.nb[e].loc.pack == key.pack; e++)
			;
		snprintf(obj, sizeof(obj), "pack.%016" PRIx64, key.pack);
		got = pk->size <= VMRS_RADOS_PACK + VMRS_MAX_BLOCK + VMRS_TAG_LEN ?
		      L.rados_read(r->io, obj, (char *)buf, pk->size, 0) : -EFBIG;
		for (size_t k = i; k < e && !pk->bad; k++)
			if (got < 0 || a.nb[k].loc.off + a.nb[k].loc.len > (uint64_t)got)
				pk->bad = true;	/* stays, for verify to report */
		for (size_t k = i; k < e && !pk->bad && !rc; k++) {
			struct vmrs_loc to;

			rc = vmrs_pack_append(&w, buf + a.nb[k].loc.off, a.nb[k].loc.len, &to);
			a.nb[n] = a.nb[k];
			a.nb[n++].loc = to;
		}
	}
	if (!rc)
		rc = vmrs_pack_finish(&w);
	if (!rc && n)
		rc = vmrs_rados_commit(s, a.nb, n);
	if (rc) {
		/* Nothing removed: every entry still points at an old, whole pack. */
		vmrs_err("gc '%s': rewriting packs: %s; nothing rewritten", s->root,
			 vmrs_rados_lost_msg(rc));
		goto out;
	}
	for (size_t i = 0; i < np; i++) {
		if (p[i].bad)
			continue;
		snprintf(obj, sizeof(obj), "pack.%016" PRIx64, p[i].pack);
		if (!L.rados_remove(r->io, obj)) {
			st->packs_rewritten++;
			st->bytes_freed += p[i].size - p[i].live;
		}
	}
out:
	vmrs_pack_abort(&w);
	free(buf);
	free(a.nb);
	return rc;
}

/*
 * Index objects of another generation than the policy's: a reshard that
 * was killed before its switch left new ones, after it the old ones.
 * Under the exclusive lock nobody uses them (every command reads the
 * policy under its lock on head). Returns how many were removed, or <0.
 */
static int64_t remove_stale_shards(struct vmrs_rados *r, unsigned int keep_gen)
{
	rados_list_ctx_t lc;
	const char *entry, *key, *nspace;
	int64_t n = 0;
	int rc;

	rc = L.rados_nobjects_list_open(r->io, &lc);
	if (rc)
		return rc;
	while (!(rc = L.rados_nobjects_list_next(lc, &entry, &key, &nspace))) {
		const char *p = entry + 6, *dot;
		unsigned long g = 0;

		if (strncmp(entry, "index.", 6))
			continue;
		dot = strchr(p, '.');
		if (dot) {
			char *end;

			g = strtoul(p, &end, 10);
			if (end != dot || !g)
				continue;	/* not a name this tool makes */
		}
		if (g != keep_gen && !L.rados_remove(r->io, entry))
			n++;
	}
	L.rados_nobjects_list_close(lc);
	return rc == -ENOENT ? n : rc;
}

/*
 * Under the exclusive lock on head and every shard: no save holds its
 * lock, and one that lost it can commit nothing. Removes index entries no
 * manifest lists, packs no entry points into, and manifest objects no
 * name points to (of killed saves), and rewrites the packs under half
 * live (below).
 */
int vmrs_rados_gc(struct vmrs_store *s, struct vmrs_live *live, struct vmrs_gc_stats *st)
{
	struct vmrs_rados *r = s->rados;
	struct gc_acc a = { .r = r, .live = live, .st = st };
	struct dir_acc d = { 0 };
	struct rw_pack *rw = NULL;
	size_t nrw = 0;
	rados_list_ctx_t lc;
	const char *entry, *key, *nspace;
	char name[32];
	int64_t stale;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	a.rm = malloc(PAGE_KEYS * sizeof(*a.rm));
	if (!a.rm)
		return -1;
	/* A page's dead keys are removed before the next page is read. */
	for (int k = 1; k <= (int)r->nshards && !rc; k++) {
		obj_name(r, k, name, sizeof(name));
		a.obj = name;
		a.kept = 0;
		rc = omap_pages(r, name, NULL, gc_entry, gc_page, &a);
		if (!rc)
			rc = set_count(&a, name, a.kept);
	}
	if (!rc)
		rc = omap_each(r, "head", "m:", add_dir, &d);
	if (rc) {
		vmrs_err("gc '%s': %s", s->root, vmrs_rados_lost_msg(rc));
		goto out;
	}
	/* What a killed reshard left: a partial copy, or the old shards. */
	stale = remove_stale_shards(r, r->gen);
	if (stale < 0) {
		rc = (int)stale;
		vmrs_err("gc '%s': listing objects: %s", s->root, rerr(rc));
		goto out;
	}
	st->tmps += (uint64_t)stale;
	merge_pl(&a);
	if (d.n)
		qsort(d.ids, d.n, sizeof(*d.ids), cmp_str17);
	rc = L.rados_nobjects_list_open(r->io, &lc);
	if (rc) {
		vmrs_err("gc '%s': listing objects: %s", s->root, rerr(rc));
		goto out;
	}
	while (!(rc = L.rados_nobjects_list_next(lc, &entry, &key, &nspace))) {
		uint64_t id, size = 0;
		struct pack_live kp, *lp;
		uint8_t b[8];

		if (!strncmp(entry, "pack.", 5) && strlen(entry) == 21 &&
		    !vmrs_unhex(entry + 5, b, 8)) {
			id = strtoull(entry + 5, NULL, 16);
			kp.pack = id;
			lp = a.npl ? bsearch(&kp, a.pl, a.npl, sizeof(kp), cmp_pl) : NULL;
			if (lp) {
				void *g;

				if (L.rados_stat(r->io, entry, &size, NULL) ||
				    lp->live >= (size - (size > 16 ? 16 : size)) / 2)
					continue;
				g = realloc(rw, (nrw + 1) * sizeof(*rw));
				if (!g)
					continue;
				rw = g;
				rw[nrw++] = (struct rw_pack){ id, size, lp->live, false };
				continue;
			}
			L.rados_stat(r->io, entry, &size, NULL);
			if (!L.rados_remove(r->io, entry)) {
				st->packs_removed++;
				st->bytes_freed += size;
			}
		} else if (!strncmp(entry, "man.", 4) && strlen(entry) == 20) {
			if (d.n && bsearch(entry + 4, d.ids, d.n, sizeof(*d.ids), cmp_str17))
				continue;
			st->tmps += !L.rados_remove(r->io, entry);
		}
	}
	L.rados_nobjects_list_close(lc);
	rc = rc == -ENOENT ? 0 : rc;
	if (rc)
		vmrs_err("gc '%s': listing objects: %s", s->root, rerr(rc));
	if (!rc && nrw)
		rc = rewrite_packs(s, rw, nrw, st);
out:
	free(rw);
	free(a.rm);
	free(a.pl);
	free(d.ids);
	return rc ? -1 : 0;
}

/*
 * A test hook as save's: VMRESET_STORE_STOP_AT=reshard-copied (the copy
 * made, the policy not yet switched) or reshard-switched (the old shards
 * not yet removed) stops the reshard with SIGSTOP; STAGE:N sleeps N
 * seconds there instead, its locks renewed, so a test can start a command
 * that has to wait for it.
 */
static void reshard_stop_at(const char *stage)
{
	const char *want = getenv("VMRESET_STORE_STOP_AT");
	size_t l = strlen(stage);
	uint32_t secs;

	if (!want || strncmp(want, stage, l))
		return;
	if (!want[l])
		raise(SIGSTOP);
	else if (want[l] == ':' && !vmr_parse_u32(want + l + 1, &secs))
		sleep(secs);
}

struct rs_ent {
	char key[2 * VMRS_HASH_LEN];
	char val[IDX_VAL];
	uint32_t dst;
};

struct rs_acc {
	struct vmrs_rados *r;
	unsigned int gen, n;		/* the new shards */
	struct rs_ent *e;
	size_t ne;
	uint64_t *count;		/* entries per new shard */
	uint64_t moved, skipped;
};

/* Buffered while reading an old shard: at most this many entries. */
#define RS_BUF	65536

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int cmp_dst(const void *x, const void *y)
{
	const struct rs_ent *a = x, *b = y;

	return a->dst < b->dst ? -1 : a->dst > b->dst;
}

/* The buffered entries, grouped by new shard, at most PAGE_KEYS an operation. */
static int rs_flush(struct rs_acc *a)
{
	const char *keys[PAGE_KEYS], *vals[PAGE_KEYS];
	size_t kl[PAGE_KEYS], vl[PAGE_KEYS], m;
	char name[32];
	int rc = 0;

	qsort(a->e, a->ne, sizeof(*a->e), cmp_dst);
	for (size_t i = 0; i < a->ne && !rc; i += m) {
		uint32_t k = a->e[i].dst;
		rados_write_op_t op;

		for (m = 0; i + m < a->ne && m < PAGE_KEYS && a->e[i + m].dst == k; m++) {
			keys[m] = a->e[i + m].key;
			kl[m] = sizeof(a->e[i + m].key);
			vals[m] = a->e[i + m].val;
			vl[m] = IDX_VAL;
		}
		/*
		 * No lock assertion: nothing reads a new shard before the
		 * policy names it, and that switch asserts our lock on head.
		 */
		gen_name(a->gen, (int)k + 1, name, sizeof(name));
		op = L.rados_create_write_op();
		L.rados_write_op_omap_set2(op, keys, vals, kl, vl, m);
		rc = L.rados_write_op_operate(op, a->r->io, name, NULL, 0);
		L.rados_release_write_op(op);
		a->count[k] += m;
		a->moved += m;
	}
	a->ne = 0;
	return rc;
}

static int rs_entry(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
	struct rs_acc *a = arg;
	struct rs_ent *e;
	int h[4];

	for (int i = 0; i < 4 && kl == 2 * VMRS_HASH_LEN; i++)
		h[i] = hexval(k[i]);
	/* What gc and lookups would never match: not carried over. */
	if (kl != 2 * VMRS_HASH_LEN || vl != IDX_VAL || h[0] < 0 || h[1] < 0 || h[2] < 0 ||
	    h[3] < 0) {
		a->skipped++;
		return 0;
	}
	e = &a->e[a->ne++];
	memcpy(e->key, k, kl);
	memcpy(e->val, v, vl);
	/* shard_of() on the ID's first two bytes, as the new policy will place it. */
	e->dst = (uint32_t)(((unsigned int)(h[0] << 4 | h[1]) |
			     (unsigned int)(h[2] << 4 | h[3]) << 8) % a->n);
	return a->ne + PAGE_KEYS > RS_BUF ? rs_flush(a) : 0;
}

/* @policy with index_shards and index_gen set, and version 3 (older tools refuse it). */
static char *rs_policy(const char *policy, unsigned int n, unsigned int gen)
{
	size_t len = strlen(policy) + 64, o = 0;
	char *out = malloc(len);
	const char *p = policy;

	if (!out)
		return NULL;
	while (*p) {
		size_t l = strcspn(p, "\n");

		if (p == policy && !strncmp(p, "vmreset-store ", 14))
			o += (size_t)snprintf(out + o, len - o, "vmreset-store 3\n");
		else if (strncmp(p, "index_shards ", 13) && strncmp(p, "index_gen ", 10) && l)
			o += (size_t)snprintf(out + o, len - o, "%.*s\n", (int)l, p);
		p += l + (p[l] == '\n');
	}
	snprintf(out + o, len - o, "index_shards %u\nindex_gen %u\n", n, gen);
	return out;
}

int vmrs_rados_reshard(struct vmrs_store *s, unsigned int nshards, struct vmrs_reshard_stats *st)
{
	struct vmrs_rados *r = s->rados;
	struct rs_acc a = { .r = r, .gen = r->gen + 1, .n = nshards };
	uint64_t total = vmrs_rados_count(s), size = 0;
	char name[32], cnt[32], buf[256], *np = NULL, *policy = NULL;
	rados_write_op_t op;
	int64_t stale;
	int rc = 0, prval = 0, k0;

	memset(st, 0, sizeof(*st));
	st->old_shards = r->nshards;
	st->old_gen = r->gen;
	if (!r->exclusive)
		return -EINVAL;
	if (total > r->shard_keys * (uint64_t)nshards) {
		vmrs_err("reshard '%s': %" PRIu64 " block entries do not fit %u shards of at most %"
			 PRIu64 " (VMRESET_STORE_RADOS_SHARD_KEYS; the counts are exact after gc): "
			 "nothing changed", s->root, total, nshards, r->shard_keys);
		return -EFBIG;
	}
	/* A killed reshard's new shards would be mixed into ours. */
	stale = remove_stale_shards(r, r->gen);
	if (stale < 0) {
		vmrs_err("reshard '%s': listing objects: %s", s->root, rerr((int)stale));
		return (int)stale;
	}
	st->stale_removed = (uint64_t)stale;
	a.e = malloc(RS_BUF * sizeof(*a.e));
	a.count = calloc(nshards, sizeof(*a.count));
	if (!a.e || !a.count) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned int k = 1; k <= nshards && !rc; k++) {
		gen_name(a.gen, (int)k, name, sizeof(name));
		op = L.rados_create_write_op();
		L.rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
		rc = L.rados_write_op_operate(op, r->io, name, NULL, 0);
		L.rados_release_write_op(op);
	}
	/* Old shard by old shard: only its share of the new shards is buffered. */
	for (int k = 1; k <= (int)r->nshards && !rc; k++) {
		obj_name(r, k, name, sizeof(name));
		rc = omap_pages(r, name, NULL, rs_entry, NULL, &a);
		if (!rc)
			rc = rs_flush(&a);
		if (!rc && atomic_load(&r->lost))
			rc = -ENOLCK;
	}
	for (unsigned int k = 1; k <= nshards && !rc; k++) {
		gen_name(a.gen, (int)k, name, sizeof(name));
		snprintf(cnt, sizeof(cnt), "%" PRIu64, a.count[k - 1]);
		op = L.rados_create_write_op();
		L.rados_write_op_setxattr(op, KEYS_XATTR, cnt, strlen(cnt));
		rc = L.rados_write_op_operate(op, r->io, name, NULL, 0);
		L.rados_release_write_op(op);
	}
	if (rc) {
		vmrs_err("reshard '%s': copying the index: %s; nothing changed (the next reshard or "
			 "gc removes the partial copy)", s->root,
			 vmrs_rados_lost_msg(rc == -ENOLCK ? -EBUSY : rc));
		goto out;
	}
	reshard_stop_at("reshard-copied");
	/* The switch: one write of head that only applies while we hold the lock. */
	rc = L.rados_stat(r->io, "head", &size, NULL);
	if (!rc && size < 4096 && (policy = calloc(1, size + 1)))
		rc = L.rados_read(r->io, "head", policy, size, 0);
	if (rc >= 0 && !(np = policy ? rs_policy(policy, nshards, a.gen) : NULL))
		rc = -ENOMEM;
	if (rc < 0) {
		vmrs_err("reshard '%s': reading the policy: %s; nothing changed", s->root,
			 rerr(rc));
		goto out;
	}
	rc = 0;
	op = L.rados_create_write_op();
	op_assert_store(r, op, buf, &prval);
	L.rados_write_op_write_full(op, np, strlen(np));
	rc = L.rados_write_op_operate(op, r->io, "head", NULL, 0);
	L.rados_release_write_op(op);
	if (rc) {
		vmrs_err("reshard '%s': switching the policy: %s; nothing changed (the next "
			 "reshard or gc removes the copy)", s->root, vmrs_rados_lost_msg(rc));
		goto out;
	}
	st->moved = a.moved;
	st->skipped = a.skipped;
	st->new_shards = nshards;
	st->new_gen = a.gen;
	reshard_stop_at("reshard-switched");
	/*
	 * Switched: the old shards are garbage now. Stop renewing their locks
	 * (head's stays) and remove them; one left behind goes at the next gc.
	 */
	pthread_mutex_lock(&r->hb_lock);
	k0 = r->nlocked;
	r->nlocked = 1;
	while (r->hb_busy)
		pthread_cond_wait(&r->hb_cond, &r->hb_lock);
	pthread_mutex_unlock(&r->hb_lock);
	for (int k = k0 - 1; k >= 1; k--) {
		obj_name(r, k, name, sizeof(name));
		L.rados_unlock(r->io, name, LOCK_NAME, r->cookie);
	}
	for (int k = 1; k <= (int)r->nshards; k++) {
		obj_name(r, k, name, sizeof(name));
		st->old_removed += !L.rados_remove(r->io, name);
	}
	r->nshards = nshards;
	r->gen = a.gen;
out:
	free(policy);
	free(np);
	free(a.e);
	free(a.count);
	return rc;
}
