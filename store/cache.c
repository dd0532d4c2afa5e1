// SPDX-License-Identifier: GPL-2.0
/*
 * cache.c - the host's block cache in front of a RADOS store
 *
 * Sealed blocks fetched from RADOS, keyed by their location (pack, offset:
 * packs are written once and never change, so a location names one byte
 * string forever), in an LMDB file of bounded size with least-recently-
 * used eviction. Blocks stay sealed: a reader authenticates each with its
 * key, so a damaged cache entry is detected on use, dropped and fetched
 * again (the cache never needs to be trusted, hence MDB_NOSYNC: a crash
 * may lose the last entries, never return wrong bytes undetected).
 *
 * Puts are gathered and written in one transaction per batch; hits are
 * recorded and moved to the young end of the LRU order with the next batch.
 */
#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"

#define BATCH_ENTRIES	512
#define BATCH_BYTES	(4U << 20)	/* at most; a quarter of the cache size */

struct pending {
	uint8_t k[16];
	uint32_t len;
	uint8_t *data;
};

struct pending_id {
	uint8_t id[VMRS_HASH_LEN];
	uint8_t loc[20];	/* pack, offset, length */
};

struct vmrs_cache {
	MDB_env *env;
	MDB_dbi blk, age, lru, meta, ids;
	struct pending_id pid[BATCH_ENTRIES];
	int npid;
	uint64_t max, bytes, seq;
	pthread_mutex_t lock;
	struct pending put[BATCH_ENTRIES];
	int nput;
	size_t put_bytes;
	uint8_t hit[BATCH_ENTRIES][16];
	int nhit;
	uint64_t hits, misses;
};

/*
 * What an entry costs in the file: LMDB puts a value larger than a page on
 * overflow pages of its own (a 4 KiB block plus its tag takes two), and
 * the bound is on the disk the cache uses, not on the bytes it holds.
 */
static uint64_t cost(size_t len)
{
	return (len + 16 + 4095) / 4096 * 4096;
}

static void be64(uint64_t v, uint8_t out[8])
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

static int meta_get(MDB_txn *t, MDB_dbi d, const char *k, uint64_t *v)
{
	MDB_val key = { strlen(k), (void *)k }, val;

	*v = 0;
	if (mdb_get(t, d, &key, &val) || val.mv_size != 8)
		return 0;
	memcpy(v, val.mv_data, 8);
	return 0;
}

static int meta_put(MDB_txn *t, MDB_dbi d, const char *k, uint64_t v)
{
	MDB_val key = { strlen(k), (void *)k }, val = { 8, &v };

	return mdb_put(t, d, &key, &val, 0);
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, 0700) && errno != EEXIST ? -errno : 0;
}

struct vmrs_cache *vmrs_cache_open(const char *dir, uint64_t max)
{
	struct vmrs_cache *c = calloc(1, sizeof(*c));
	char path[PATH_MAX];
	MDB_txn *t = NULL;
	int rc;

	if (!c)
		return NULL;
	c->max = max;
	pthread_mutex_init(&c->lock, NULL);
	rc = mkdirs(dir);
	if (rc) {
		vmrs_err("block cache '%s': %s", dir, strerror(-rc));
		goto err;
	}
	snprintf(path, sizeof(path), "%s/cache.mdb", dir);
	rc = mdb_env_create(&c->env);
	if (!rc)
		rc = mdb_env_set_maxdbs(c->env, 5);
	/* Room for the blocks, their LRU records and LMDB's own pages. */
	if (!rc)
		rc = mdb_env_set_mapsize(c->env, (size_t)(max + max / 2 + (64ULL << 20)));
	if (!rc)
		rc = mdb_env_open(c->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC, 0600);
	if (!rc)
		rc = mdb_txn_begin(c->env, NULL, 0, &t);
	if (!rc)
		rc = mdb_dbi_open(t, "blk", MDB_CREATE, &c->blk);
	if (!rc)
		rc = mdb_dbi_open(t, "age", MDB_CREATE, &c->age);
	if (!rc)
		rc = mdb_dbi_open(t, "lru", MDB_CREATE, &c->lru);
	if (!rc)
		rc = mdb_dbi_open(t, "meta", MDB_CREATE, &c->meta);
	if (!rc)
		rc = mdb_dbi_open(t, "ids", MDB_CREATE, &c->ids);
	if (!rc) {
		meta_get(t, c->meta, "bytes", &c->bytes);
		meta_get(t, c->meta, "seq", &c->seq);
		rc = mdb_txn_commit(t);
		t = NULL;
	}
	if (rc) {
		vmrs_err("block cache '%s': %s (remove it, or set VMRESET_STORE_CACHE_SIZE=0)",
			 path, mdb_strerror(rc));
		goto err;
	}
	return c;
err:
	if (t)
		mdb_txn_abort(t);
	if (c->env)
		mdb_env_close(c->env);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

static void drop_locked(MDB_txn *t, struct vmrs_cache *c, const uint8_t k[16])
{
	MDB_val key = { 16, (void *)k }, v;
	uint8_t sk[8];

	if (!mdb_get(t, c->blk, &key, &v)) {
		c->bytes -= cost(v.mv_size) < c->bytes ? cost(v.mv_size) : c->bytes;
		mdb_del(t, c->blk, &key, NULL);
	}
	if (!mdb_get(t, c->age, &key, &v) && v.mv_size == 8) {
		uint64_t seq;
		MDB_val lk = { 8, sk };

		memcpy(&seq, v.mv_data, 8);
		be64(seq, sk);
		mdb_del(t, c->lru, &lk, NULL);
		mdb_del(t, c->age, &key, NULL);
	}
}

static int touch(MDB_txn *t, struct vmrs_cache *c, const uint8_t k[16])
{
	MDB_val key = { 16, (void *)k }, v, lk, lv = { 16, (void *)k };
	uint8_t sk[8];
	uint64_t seq;
	int rc;

	if (!mdb_get(t, c->age, &key, &v) && v.mv_size == 8) {
		memcpy(&seq, v.mv_data, 8);
		be64(seq, sk);
		lk = (MDB_val){ 8, sk };
		mdb_del(t, c->lru, &lk, NULL);
	}
	seq = ++c->seq;
	be64(seq, sk);
	lk = (MDB_val){ 8, sk };
	v = (MDB_val){ 8, &seq };
	rc = mdb_put(t, c->age, &key, &v, 0);
	return rc ? rc : mdb_put(t, c->lru, &lk, &lv, 0);
}

/* Writes the batch: new blocks, hits moved up, the oldest evicted. */
static void flush_locked(struct vmrs_cache *c)
{
	MDB_txn *t;
	int rc;

	if (!c->nput && !c->nhit && !c->npid)
		return;
	rc = mdb_txn_begin(c->env, NULL, 0, &t);
	/*
	 * The ID map is a hint, only used where the block itself is cached:
	 * it is emptied when it names twice as many blocks as the cache holds.
	 */
	if (!rc && c->npid) {
		MDB_stat ms;

		if (!mdb_stat(t, c->ids, &ms) && ms.ms_entries > 2 * (c->max / 8192) + 1024)
			rc = mdb_drop(t, c->ids, 0);
	}
	for (int i = 0; i < c->npid && !rc; i++) {
		MDB_val key = { VMRS_HASH_LEN, c->pid[i].id }, v = { 20, c->pid[i].loc };

		rc = mdb_put(t, c->ids, &key, &v, 0);
	}
	for (int i = 0; i < c->nput && !rc; i++) {
		MDB_val key = { 16, c->put[i].k }, v = { c->put[i].len, c->put[i].data };

		rc = mdb_put(t, c->blk, &key, &v, MDB_NOOVERWRITE);
		if (rc == MDB_KEYEXIST) {
			rc = 0;
			continue;
		}
		if (!rc) {
			c->bytes += cost(c->put[i].len);
			rc = touch(t, c, c->put[i].k);
		}
	}
	for (int i = 0; i < c->nhit && !rc; i++) {
		MDB_val key = { 16, c->hit[i] }, v;

		if (!mdb_get(t, c->blk, &key, &v))
			rc = touch(t, c, c->hit[i]);
	}
	while (!rc && c->bytes > c->max) {
		MDB_cursor *cur;
		MDB_val lk, lv;
		uint8_t k[16], sk[8];
		bool ok;

		if (mdb_cursor_open(t, c->lru, &cur))
			break;
		rc = mdb_cursor_get(cur, &lk, &lv, MDB_FIRST);
		ok = !rc && lv.mv_size == 16 && lk.mv_size == 8;
		/* Copied before any delete: the cursor's data lives in the pages. */
		if (ok) {
			memcpy(k, lv.mv_data, 16);
			memcpy(sk, lk.mv_data, 8);
		}
		mdb_cursor_close(cur);
		if (!ok) {
			rc = rc == MDB_NOTFOUND ? 0 : rc;
			break;		/* nothing left to evict */
		}
		drop_locked(t, c, k);
		lk = (MDB_val){ 8, sk };
		mdb_del(t, c->lru, &lk, NULL);	/* even if age was missing */
	}
	if (!rc)
		rc = meta_put(t, c->meta, "bytes", c->bytes);
	if (!rc)
		rc = meta_put(t, c->meta, "seq", c->seq);
	if (rc)
		mdb_txn_abort(t);	/* a cache: losing a batch costs refetches only */
	else
		mdb_txn_commit(t);
	for (int i = 0; i < c->nput; i++)
		free(c->put[i].data);
	c->nput = 0;
	c->put_bytes = 0;
	c->nhit = 0;
	c->npid = 0;
}

/* The location a load found for @id, if that block is cached too. */
int vmrs_cache_id_get(struct vmrs_cache *c, const uint8_t id[VMRS_HASH_LEN],
		      struct vmrs_loc *loc)
{
	MDB_val key = { VMRS_HASH_LEN, (void *)id }, v;
	MDB_txn *t;
	int ret = -ENOENT;

	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t))
		return -ENOENT;
	if (!mdb_get(t, c->ids, &key, &v) && v.mv_size == 20) {
		memcpy(&loc->pack, v.mv_data, 8);
		memcpy(&loc->off, (uint8_t *)v.mv_data + 8, 8);
		memcpy(&loc->len, (uint8_t *)v.mv_data + 16, 4);
		key = (MDB_val){ 16, v.mv_data };
		if (!mdb_get(t, c->blk, &key, &v))
			ret = 0;
	}
	mdb_txn_abort(t);
	return ret;
}

void vmrs_cache_id_put(struct vmrs_cache *c, const uint8_t id[VMRS_HASH_LEN],
		       const struct vmrs_loc *loc)
{
	pthread_mutex_lock(&c->lock);
	memcpy(c->pid[c->npid].id, id, VMRS_HASH_LEN);
	memcpy(c->pid[c->npid].loc, &loc->pack, 8);
	memcpy(c->pid[c->npid].loc + 8, &loc->off, 8);
	memcpy(c->pid[c->npid].loc + 16, &loc->len, 4);
	if (++c->npid == BATCH_ENTRIES)
		flush_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static struct pending *pending_find(struct vmrs_cache *c, const uint8_t k[16])
{
	for (int i = 0; i < c->nput; i++)
		if (!memcmp(c->put[i].k, k, 16))
			return &c->put[i];
	return NULL;
}

int vmrs_cache_get(struct vmrs_cache *c, const uint8_t k[16], uint8_t *buf, uint32_t len)
{
	MDB_val key = { 16, (void *)k }, v;
	struct pending *p;
	MDB_txn *t;
	int ret = -ENOENT;

	pthread_mutex_lock(&c->lock);
	p = pending_find(c, k);
	if (p && p->len == len) {
		memcpy(buf, p->data, len);
		ret = 0;
	}
	pthread_mutex_unlock(&c->lock);
	if (!ret)
		return 0;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t))
		return -ENOENT;
	if (!mdb_get(t, c->blk, &key, &v) && v.mv_size == len) {
		memcpy(buf, v.mv_data, len);
		ret = 0;
	}
	mdb_txn_abort(t);
	pthread_mutex_lock(&c->lock);
	if (!ret) {
		c->hits++;
		memcpy(c->hit[c->nhit++], k, 16);
		if (c->nhit == BATCH_ENTRIES)
			flush_locked(c);
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

bool vmrs_cache_has(struct vmrs_cache *c, const uint8_t k[16])
{
	MDB_val key = { 16, (void *)k }, v;
	MDB_txn *t;
	bool has;

	pthread_mutex_lock(&c->lock);
	has = pending_find(c, k) != NULL;
	pthread_mutex_unlock(&c->lock);
	if (has || mdb_txn_begin(c->env, NULL, MDB_RDONLY, &t))
		return has;
	has = !mdb_get(t, c->blk, &key, &v);
	mdb_txn_abort(t);
	return has;
}

void vmrs_cache_put(struct vmrs_cache *c, const uint8_t k[16], const uint8_t *buf,
		    uint32_t len)
{
	uint8_t *d;

	if (cost(len) > c->max)
		return;
	d = malloc(len);
	if (!d)
		return;
	memcpy(d, buf, len);
	pthread_mutex_lock(&c->lock);
	if (pending_find(c, k)) {
		free(d);
	} else {
		memcpy(c->put[c->nput].k, k, 16);
		c->put[c->nput].len = len;
		c->put[c->nput].data = d;
		c->nput++;
		c->put_bytes += len;
		if (c->nput == BATCH_ENTRIES || c->put_bytes >= BATCH_BYTES ||
		    c->put_bytes >= c->max / 4)
			flush_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

void vmrs_cache_drop(struct vmrs_cache *c, const uint8_t k[16])
{
	struct pending *p;
	MDB_txn *t;

	pthread_mutex_lock(&c->lock);
	flush_locked(c);
	p = pending_find(c, k);
	(void)p;
	if (!mdb_txn_begin(c->env, NULL, 0, &t)) {
		drop_locked(t, c, k);
		meta_put(t, c->meta, "bytes", c->bytes);
		mdb_txn_commit(t);
	}
	pthread_mutex_unlock(&c->lock);
}

void vmrs_cache_stats(struct vmrs_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *bytes)
{
	pthread_mutex_lock(&c->lock);
	*hits = c->hits;
	*misses = c->misses;
	*bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
}

void vmrs_cache_close(struct vmrs_cache *c)
{
	pthread_mutex_lock(&c->lock);
	flush_locked(c);
	pthread_mutex_unlock(&c->lock);
	mdb_env_close(c->env);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
