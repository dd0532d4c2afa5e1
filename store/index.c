// SPDX-License-Identifier: GPL-2.0
/*
 * index.c - pack files and the block index
 *
 * Sealed blocks are appended to pack files (one open pack per saving
 * thread, fsynced once when it is finished), and an LMDB B-tree maps each
 * block ID to (pack, offset, length). LMDB keeps the index on disk and
 * pages in only what lookups touch, so a store of 100 M blocks needs no
 * more memory than one of a thousand; its readers never block, and one
 * write transaction per save adds that save's blocks.
 */
#define _GNU_SOURCE	/* renameat2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

#define PACK_MAGIC	"VMRSPAK1"
#define PACK_HDR	16
#define FD_SLOTS	4096

struct fd_slot {
	uint64_t pack;
	int fd;		/* 0 = empty (fd 0 is never a pack: stdin is open) */
	bool map_tried;
	const uint8_t *map;	/* the whole pack, read-only (vmrs_pack_map) */
	size_t map_size;
};

struct vmrs_index {
	MDB_env *env;
	MDB_dbi dbi;
	pthread_mutex_t lock;
	struct fd_slot fds[FD_SLOTS];
	int nfds;
};

struct idx_val {
	uint64_t pack, off;
	uint32_t len, pad;
};

static int lmdb_err(const char *root, const char *what, int rc)
{
	vmrs_err("'%s/index': %s: %s", root, what, mdb_strerror(rc));
	return -1;
}

int vmrs_index_open(struct vmrs_store *s)
{
	struct vmrs_index *x = calloc(1, sizeof(*x));
	char path[PATH_MAX];
	MDB_txn *t;
	int rc, dead;
	bool created;

	if (!x)
		return -1;
	pthread_mutex_init(&x->lock, NULL);
	s->idx = x;
	snprintf(path, sizeof(path), "%s/index", s->root);
	created = access(path, F_OK) != 0;
	rc = mdb_env_create(&x->env);
	if (!rc)
		rc = mdb_env_set_mapsize(x->env, 1ULL << 40);	/* address space only */
	if (!rc)
		rc = mdb_env_set_maxreaders(x->env, 1024);
	if (!rc)
		rc = mdb_env_open(x->env, path, MDB_NOSUBDIR | MDB_NOTLS, 0644);
	if (rc)
		return lmdb_err(s->root, "open", rc);
	/* Reader slots of killed processes would pin old pages forever. */
	mdb_reader_check(x->env, &dead);
	rc = mdb_txn_begin(x->env, NULL, 0, &t);
	if (!rc)
		rc = mdb_dbi_open(t, NULL, 0, &x->dbi);
	if (!rc)
		rc = mdb_txn_commit(t);
	if (rc)
		return lmdb_err(s->root, "open", rc);
	/* LMDB syncs the file, not its name: without this a crash can lose the index. */
	if (created && (rc = vmrs_fsync_dir(s->root))) {
		vmrs_err("'%s': fsync: %s", s->root, strerror(-rc));
		return -1;
	}
	return 0;
}

void vmrs_pack_cache_drop(struct vmrs_store *s)
{
	struct vmrs_index *x = s->idx;

	if (!x)
		return;
	for (int i = 0; i < FD_SLOTS; i++)
		if (x->fds[i].fd > 0) {
			if (x->fds[i].map)
				munmap((void *)x->fds[i].map, x->fds[i].map_size);
			close(x->fds[i].fd);
			memset(&x->fds[i], 0, sizeof(x->fds[i]));
		}
	x->nfds = 0;
}

void vmrs_index_close(struct vmrs_store *s)
{
	struct vmrs_index *x = s->idx;

	if (!x)
		return;
	vmrs_pack_cache_drop(s);
	if (x->env)
		mdb_env_close(x->env);
	pthread_mutex_destroy(&x->lock);
	free(x);
	s->idx = NULL;
}

void *vmrs_index_reader(struct vmrs_store *s)
{
	MDB_txn *t;

	if (s->rados)
		return vmrs_rados_reader(s);
	return mdb_txn_begin(s->idx->env, NULL, MDB_RDONLY, &t) ? NULL : t;
}

void vmrs_index_reader_end(struct vmrs_store *s, void *rtxn)
{
	if (s->rados)
		vmrs_rados_reader_end(rtxn);
	else if (rtxn)
		mdb_txn_abort(rtxn);
}

int vmrs_index_prefetch(struct vmrs_store *s, void *rtxn, const uint8_t (*ids)[VMRS_HASH_LEN],
			size_t n)
{
	return s->rados ? vmrs_rados_prefetch(s, rtxn, ids, n) : 0;
}

int vmrs_block_prefetch(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *locs, size_t n)
{
	return s->rados ? vmrs_rados_block_prefetch(s, rtxn, locs, n) : 0;
}

int vmrs_block_get(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *loc, uint8_t *buf,
		   bool fresh)
{
	if (s->rados)
		return vmrs_rados_block_read(s, rtxn, loc, buf, fresh);
	return vmrs_block_read(s, loc, buf);
}

const char *vmrs_store_strerror(const struct vmrs_store *s, int rc)
{
	if (s->rados)
		return vmrs_rados_lost_msg(rc);
	return strerror(-rc);
}

int vmrs_index_get(struct vmrs_store *s, void *rtxn, const uint8_t id[VMRS_HASH_LEN],
		   struct vmrs_loc *loc)
{
	MDB_val k = { VMRS_HASH_LEN, (void *)id }, v;
	struct idx_val iv;

	if (s->rados)
		return vmrs_rados_get(s, rtxn, id, loc) ? -ENOENT : 0;
	if (!rtxn || mdb_get(rtxn, s->idx->dbi, &k, &v) || v.mv_size != sizeof(iv))
		return -ENOENT;
	memcpy(&iv, v.mv_data, sizeof(iv));
	loc->pack = iv.pack;
	loc->off = iv.off;
	loc->len = iv.len;
	return 0;
}

/*
 * Looks up the IDs of @e[@order[k]], k < @n, into @loc[@order[k]] (len 0
 * if missing), through one cursor. The caller orders them by ID: a
 * cursor that is already on the right leaf searches only that page, so
 * the walk reads each leaf once, in order, where lookups in block order
 * (random IDs) missed the cache on every level of the tree: LMDB was 15%
 * of a load's CPU.
 */
int vmrs_index_locate(struct vmrs_store *s, void *rtxn, const struct vmrs_entry *e,
		      const uint32_t *order, uint64_t n, struct vmrs_loc *loc)
{
	MDB_cursor *cur;
	MDB_val k, v;
	struct idx_val iv;

	if (!rtxn || mdb_cursor_open(rtxn, s->idx->dbi, &cur))
		return -EIO;
	for (uint64_t x = 0; x < n; x++) {
		struct vmrs_loc *l = &loc[order[x]];

		/*
		 * In ID order the manifest's entries and their locations are
		 * read at random: the first compare of each lookup waited on the
		 * ID's cache miss (6% of a load's CPU, in memcmp).
		 */
		if (x + 8 < n) {
			__builtin_prefetch(e[order[x + 8]].id);
			__builtin_prefetch(&loc[order[x + 8]], 1);
		}
		k.mv_size = VMRS_HASH_LEN;
		k.mv_data = (void *)e[order[x]].id;
		if (mdb_cursor_get(cur, &k, &v, MDB_SET_KEY) || v.mv_size != sizeof(iv)) {
			l->len = 0;
			continue;
		}
		memcpy(&iv, v.mv_data, sizeof(iv));
		l->pack = iv.pack;
		l->off = iv.off;
		l->len = iv.len;
	}
	mdb_cursor_close(cur);
	return 0;
}

int vmrs_index_commit(struct vmrs_store *s, const struct vmrs_newblock *nb, uint64_t n)
{
	MDB_cursor *cur = NULL;
	MDB_txn *t;
	int rc;

	if (s->rados) {
		rc = vmrs_rados_commit(s, nb, n);
		/* -EFBIG: a shard's bound, already explained. */
		if (rc && rc != -EFBIG)
			vmrs_err("'%s': adding blocks to the index: %s", s->root,
				 vmrs_rados_lost_msg(rc));
		return rc ? -1 : 0;
	}
	rc = mdb_txn_begin(s->idx->env, NULL, 0, &t);
	if (rc)
		return lmdb_err(s->root, "begin", rc);
	/*
	 * One cursor for all the puts: mdb_put() opens and closes one per
	 * call: with one, LMDB fell from 4.9% to 2.0% of a 256 MiB save's
	 * CPU (perf, one thread, tmpfs).
	 */
	rc = mdb_cursor_open(t, s->idx->dbi, &cur);
	for (uint64_t i = 0; i < n && !rc; i++) {
		struct idx_val iv = { nb[i].loc.pack, nb[i].loc.off, nb[i].loc.len, 0 };
		MDB_val k = { VMRS_HASH_LEN, (void *)nb[i].id }, v = { sizeof(iv), &iv };

		/* Another save may have stored the same block since: keep one. */
		rc = mdb_cursor_put(cur, &k, &v, nb[i].replace ? 0 : MDB_NOOVERWRITE);
		if (rc == MDB_KEYEXIST)
			rc = 0;
	}
	if (cur)
		mdb_cursor_close(cur);
	if (rc) {
		mdb_txn_abort(t);
		return lmdb_err(s->root, "add", rc);
	}
	rc = mdb_txn_commit(t);
	return rc ? lmdb_err(s->root, "commit", rc) : 0;
}

uint64_t vmrs_index_count(struct vmrs_store *s)
{
	MDB_txn *t;
	MDB_stat st;
	uint64_t n = 0;

	if (s->rados)
		return vmrs_rados_count(s);
	if (mdb_txn_begin(s->idx->env, NULL, MDB_RDONLY, &t))
		return 0;
	if (!mdb_stat(t, s->idx->dbi, &st))
		n = st.ms_entries;
	mdb_txn_abort(t);
	return n;
}

/* Pages the B-tree uses (the file may hold free pages LMDB reuses). */
uint64_t vmrs_index_bytes_used(struct vmrs_store *s)
{
	MDB_txn *t;
	MDB_stat st;
	uint64_t n = 0;

	/* RADOS: the omap keys and values (hex ID, location), before RocksDB's overhead. */
	if (s->rados)
		return vmrs_rados_count(s) * (2 * VMRS_HASH_LEN + 24);
	if (mdb_txn_begin(s->idx->env, NULL, MDB_RDONLY, &t))
		return 0;
	if (!mdb_stat(t, s->idx->dbi, &st))
		n = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
		    st.ms_psize;
	mdb_txn_abort(t);
	return n;
}

void vmrs_pack_path(const struct vmrs_store *s, uint64_t pack, char *path, size_t len)
{
	snprintf(path, len, "%s/packs/%016" PRIx64, s->root, pack);
}

#define PACK_BUF	(1U << 20)

/* A RADOS pack is gathered whole and written with one write_full. */
#define RADOS_BUF	(VMRS_RADOS_PACK + VMRS_MAX_BLOCK + VMRS_TAG_LEN)

static int pack_start(struct vmrs_pack_writer *w)
{
	/* A test hook: this pack ID instead of a random one (a collision). */
	const char *force = getenv("VMRESET_STORE_PACK_ID");

	if (!w->buf && !(w->buf = malloc(w->s->rados ? RADOS_BUF : PACK_BUF)))
		return -ENOMEM;
	if (vmrs_random(&w->id, sizeof(w->id)))
		return -EIO;
	if (force)
		w->id = strtoull(force, NULL, 16);
	if (w->s->rados) {
		w->fd = INT_MAX;	/* "open" */
		memcpy(w->buf, PACK_MAGIC, 8);
		memcpy(w->buf + 8, &w->id, 8);
		w->blen = PACK_HDR;
		w->off = PACK_HDR;
		return 0;
	}
	snprintf(w->tmp, sizeof(w->tmp), "%s/packs/.tmp.%016" PRIx64, w->s->root, w->id);
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0)
		return -errno;
	memcpy(w->buf, PACK_MAGIC, 8);
	memcpy(w->buf + 8, &w->id, 8);
	w->blen = PACK_HDR;
	w->off = PACK_HDR;
	return 0;
}

/* Sealed blocks are gathered in a buffer and written a megabyte at a time. */
static int pack_flush(struct vmrs_pack_writer *w)
{
	int ret;

	if (!w->blen)
		return 0;
	ret = vmrs_pwrite_all(w->fd, w->buf, w->blen, (off_t)(w->off - w->blen));
	w->blen = 0;
	/*
	 * The blocks in the buffer are gone, but their locations were handed
	 * out: the pack must never be finished, or an index entry would
	 * point at a hole once a later write succeeds.
	 */
	if (ret)
		w->err = ret;
	return ret;
}

/*
 * Pack IDs are random: two packs drawing one would make a rename replace
 * the older pack, and every block indexed in it would be lost. Where the
 * filesystem cannot refuse in the rename, link() does (and fails with
 * EEXIST just the same).
 */
static int rename_noreplace(const char *from, const char *to)
{
	if (!renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(from, to))
		return -errno;
	unlink(from);
	return 0;
}

int vmrs_pack_finish(struct vmrs_pack_writer *w)
{
	char path[PATH_MAX];
	int ret;

	if (w->fd <= 0)
		return w->err;
	if (w->s->rados) {
		ret = w->err ? w->err : vmrs_rados_pack_put(w->s, w->id, w->buf, w->blen);
		w->fd = 0;
		w->blen = 0;
		if (ret)
			w->err = ret;
		return ret;
	}
	ret = w->err ? w->err : pack_flush(w);
	if (!ret && fsync(w->fd))
		ret = -errno;
	close(w->fd);
	w->fd = 0;
	vmrs_pack_path(w->s, w->id, path, sizeof(path));
	if (!ret)
		ret = rename_noreplace(w->tmp, path);
	if (ret == -EEXIST)
		vmrs_err("'%s': pack %016" PRIx64 " already exists (a 64-bit ID drawn twice): it "
			 "is kept, and this save's pack with that ID is dropped", w->s->root, w->id);
	if (ret) {
		unlink(w->tmp);
		w->err = ret;
	}
	return ret;
}

void vmrs_pack_abort(struct vmrs_pack_writer *w)
{
	if (w->fd > 0 && w->s && w->s->rados) {
		w->fd = 0;	/* nothing was written */
	} else if (w->fd > 0) {
		close(w->fd);
		w->fd = 0;
		unlink(w->tmp);
	}
	free(w->buf);
	w->buf = NULL;
	w->blen = 0;
}

uint8_t *vmrs_pack_reserve(struct vmrs_pack_writer *w, uint32_t len, struct vmrs_loc *loc,
			   int *err)
{
	uint8_t *p;

	*err = w->err;
	if (!*err && w->fd > 0 && w->off + len > (w->s->rados ? VMRS_RADOS_PACK : VMRS_PACK_MAX))
		*err = vmrs_pack_finish(w);
	if (!*err && w->fd <= 0)
		*err = pack_start(w);
	if (!*err && !w->s->rados && w->blen + len > PACK_BUF)
		*err = pack_flush(w);
	if (*err)
		return NULL;
	p = w->buf + w->blen;
	loc->pack = w->id;
	loc->off = w->off;
	loc->len = len;
	w->blen += len;
	w->off += len;
	return p;
}

int vmrs_pack_append(struct vmrs_pack_writer *w, const uint8_t *data, uint32_t len,
		     struct vmrs_loc *loc)
{
	int err;
	uint8_t *p = vmrs_pack_reserve(w, len, loc, &err);

	if (p)
		memcpy(p, data, len);
	return err;
}

int vmrs_sync_packs(const struct vmrs_store *s)
{
	char path[PATH_MAX];

	if (s->rados)
		return 0;	/* a RADOS write is durable when acknowledged */
	snprintf(path, sizeof(path), "%s/packs", s->root);
	return vmrs_fsync_dir(path);
}

/* Open pack files stay cached, up to a share of the descriptor limit. */
#define FD_CACHED_MAX	512

/*
 * The cached slot of @pack, opened now if it is not yet: NULL with *@fd
 * the descriptor (the caller closes it) when the cache is full, or with
 * *@fd -1 when the pack cannot be opened. Called with x->lock held.
 */
static struct fd_slot *pack_slot(struct vmrs_store *s, uint64_t pack, int *fd)
{
	struct vmrs_index *x = s->idx;
	uint32_t h = (uint32_t)(pack * 0x9e3779b97f4a7c15ULL >> 52) % FD_SLOTS;
	char path[PATH_MAX];

	*fd = -1;
	for (uint32_t i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *sl = &x->fds[(h + i) % FD_SLOTS];

		if (sl->fd > 0 && sl->pack == pack) {
			*fd = sl->fd;
			return sl;
		}
		if (sl->fd <= 0) {
			vmrs_pack_path(s, pack, path, sizeof(path));
			*fd = open(path, O_RDONLY | O_CLOEXEC);
			if (*fd <= 0 || x->nfds >= FD_CACHED_MAX)
				return NULL;
			sl->fd = *fd;
			sl->pack = pack;
			x->nfds++;
			return sl;
		}
	}
	return NULL;
}

static int pack_fd(struct vmrs_store *s, uint64_t pack, bool *owned)
{
	struct vmrs_index *x = s->idx;
	int fd;

	pthread_mutex_lock(&x->lock);
	*owned = !pack_slot(s, pack, &fd) && fd > 0;
	pthread_mutex_unlock(&x->lock);
	return fd;
}

/*
 * Pack @pack mapped whole and read-only, once, for as long as its
 * descriptor stays cached: a load then opens blocks where they lie
 * instead of copying them out first. NULL where it cannot be (the cache
 * is full, the pack is missing or empty, mmap fails): the caller preads.
 * The size is the pack's when it was mapped; a pack cut shorter since
 * raises SIGBUS on access, which the caller must catch.
 */
const uint8_t *vmrs_pack_map(struct vmrs_store *s, uint64_t pack, size_t *size)
{
	struct vmrs_index *x = s->idx;
	const uint8_t *map = NULL;
	struct fd_slot *sl;
	struct stat st;
	int fd;

	pthread_mutex_lock(&x->lock);
	sl = pack_slot(s, pack, &fd);
	if (!sl) {
		if (fd > 0)
			close(fd);
	} else {
		if (!sl->map_tried) {
			void *p = MAP_FAILED;

			sl->map_tried = true;
			if (!fstat(fd, &st) && st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX)
				p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
			if (p != MAP_FAILED) {
				sl->map = p;
				sl->map_size = (size_t)st.st_size;
			}
		}
		map = sl->map;
		*size = sl->map_size;
	}
	pthread_mutex_unlock(&x->lock);
	return map;
}

int vmrs_pack_read(struct vmrs_store *s, uint64_t pack, uint64_t off, size_t len, uint8_t *buf)
{
	bool owned;
	int fd, ret;

	fd = pack_fd(s, pack, &owned);
	if (fd < 0)
		return -ENOENT;
	ret = vmrs_pread_all(fd, buf, len, (off_t)off);
	if (owned)
		close(fd);
	return ret;
}

/* 0, -ENOENT (no such pack) or -ENODATA (the pack is too short). */
int vmrs_block_read(struct vmrs_store *s, const struct vmrs_loc *loc, uint8_t *buf)
{
	if (s->rados)
		return vmrs_rados_block_read(s, NULL, loc, buf, false);
	return vmrs_pack_read(s, loc->pack, loc->off, loc->len, buf);
}

uint64_t vmrs_index_bytes(struct vmrs_store *s, uint8_t (*ids)[VMRS_HASH_LEN], uint64_t n)
{
	void *t = vmrs_index_reader(s);
	struct vmrs_loc loc;
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n; i++) {
		if (s->rados && !(i % 1024))
			vmrs_index_prefetch(s, t, (const uint8_t (*)[VMRS_HASH_LEN])ids[i],
					    n - i < 1024 ? n - i : 1024);
		if (!vmrs_index_get(s, t, ids[i], &loc))
			sum += loc.len;
	}
	vmrs_index_reader_end(s, t);
	return sum;
}

struct pack_info {
	uint64_t id, size, live;
	bool rewrite;
};

static int cmp_pack(const void *a, const void *b)
{
	const struct pack_info *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static struct pack_info *find_pack(struct pack_info *p, size_t n, uint64_t id)
{
	struct pack_info key = { .id = id };

	return n ? bsearch(&key, p, n, sizeof(*p), cmp_pack) : NULL;
}

/*
 * Called under the exclusive store lock: no save is between its first
 * block and its manifest, so an index entry no manifest lists, a pack no
 * entry points into and a temporary file are all garbage. Packs that are
 * mostly garbage are rewritten: the live blocks are copied to a new pack
 * (fsynced), the index switched to it (one commit), then the old one
 * removed, so a crash at any point loses nothing.
 */
int vmrs_index_gc(struct vmrs_store *s, struct vmrs_live *live, struct vmrs_gc_stats *st)
{
	struct vmrs_index *x = s->idx;
	struct pack_info *packs = NULL, *pi;
	struct vmrs_newblock *nb = NULL;
	struct vmrs_pack_writer w = { .s = s };
	size_t npacks = 0, nnb = 0, nbcap = 0;
	char path[PATH_MAX + 300], dir[PATH_MAX];
	uint8_t *buf = malloc(VMRS_MAX_BLOCK + VMRS_TAG_LEN);
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_txn *t;
	struct dirent *d;
	struct stat sb;
	DIR *dd;
	int rc, ret = -1;

	if (s->rados) {
		free(buf);
		return vmrs_rados_gc(s, live, st);
	}
	memset(st, 0, sizeof(*st));
	snprintf(dir, sizeof(dir), "%s/packs", s->root);
	dd = opendir(dir);
	if (!dd || !buf) {
		vmrs_err("'%s': %s", dir, strerror(errno));
		goto out;
	}
	while ((d = readdir(dd))) {
		struct pack_info *g;
		uint8_t idb[8];

		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (!strncmp(d->d_name, ".tmp.", 5)) {
			st->tmps += !unlink(path);
			continue;
		}
		if (d->d_name[0] == '.' || vmrs_unhex(d->d_name, idb, 8) || stat(path, &sb))
			continue;
		g = realloc(packs, (npacks + 1) * sizeof(*packs));
		if (!g) {
			closedir(dd);
			goto out;
		}
		packs = g;
		packs[npacks].id = strtoull(d->d_name, NULL, 16);
		packs[npacks].size = (uint64_t)sb.st_size;
		packs[npacks].live = 0;
		packs[npacks].rewrite = false;
		npacks++;
	}
	closedir(dd);
	if (npacks)
		qsort(packs, npacks, sizeof(*packs), cmp_pack);

	/* Drop the entries no manifest lists; count what each pack keeps. */
	rc = mdb_txn_begin(x->env, NULL, 0, &t);
	if (!rc)
		rc = mdb_cursor_open(t, x->dbi, &cur);
	if (rc) {
		lmdb_err(s->root, "gc", rc);
		goto out;
	}
	while (!(rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))) {
		struct idx_val iv;
		int lv;

		if (k.mv_size != VMRS_HASH_LEN || v.mv_size != sizeof(iv))
			continue;
		memcpy(&iv, v.mv_data, sizeof(iv));
		lv = vmrs_live_has(live, k.mv_data);
		if (lv < 0) {
			/* Not knowing what is live, remove nothing. */
			mdb_cursor_close(cur);
			mdb_txn_abort(t);
			vmrs_err("gc: stopped, nothing removed");
			goto out;
		}
		if (lv) {
			pi = find_pack(packs, npacks, iv.pack);
			if (pi)
				pi->live += iv.len;
			st->blocks_kept++;
			continue;
		}
		rc = mdb_cursor_del(cur, 0);
		if (rc)
			break;
		st->blocks_removed++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND || (rc = mdb_txn_commit(t))) {
		if (rc != MDB_NOTFOUND)
			mdb_txn_abort(t);
		lmdb_err(s->root, "gc", rc);
		goto out;
	}

	for (size_t i = 0; i < npacks; i++)
		packs[i].rewrite = packs[i].live && packs[i].live < (packs[i].size - PACK_HDR) / 2;
	/* Copy the live blocks of mostly-dead packs (no key: they stay sealed). */
	rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &t);
	if (!rc)
		rc = mdb_cursor_open(t, x->dbi, &cur);
	if (rc) {
		lmdb_err(s->root, "gc", rc);
		goto out;
	}
	while (!mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct idx_val iv;
		struct vmrs_loc from, to;

		if (k.mv_size != VMRS_HASH_LEN || v.mv_size != sizeof(iv))
			continue;
		memcpy(&iv, v.mv_data, sizeof(iv));
		pi = find_pack(packs, npacks, iv.pack);
		if (!pi || !pi->rewrite || iv.len > VMRS_MAX_BLOCK + VMRS_TAG_LEN)
			continue;
		from = (struct vmrs_loc){ iv.pack, iv.off, iv.len };
		if (vmrs_block_read(s, &from, buf) || vmrs_pack_append(&w, buf, iv.len, &to)) {
			/* An unreadable block stays where it is, for verify to report. */
			pi->rewrite = false;
			continue;
		}
		if (nnb == nbcap) {
			struct vmrs_newblock *g;

			nbcap = nbcap ? 2 * nbcap : 1024;
			g = realloc(nb, nbcap * sizeof(*nb));
			if (!g) {
				mdb_cursor_close(cur);
				mdb_txn_abort(t);
				goto out;
			}
			nb = g;
		}
		memcpy(nb[nnb].id, k.mv_data, VMRS_HASH_LEN);
		nb[nnb].loc = to;
		nb[nnb].replace = true;
		nnb++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(t);
	rc = vmrs_pack_finish(&w);
	if (!rc)
		rc = vmrs_sync_packs(s);
	if (rc) {
		/* Nothing switched: every old pack stays, the new one is removed. */
		vmrs_err("gc: rewriting packs: %s; nothing rewritten", strerror(-rc));
		goto out;
	}
	if (nnb && vmrs_index_commit(s, nb, nnb))
		goto out;
	vmrs_pack_cache_drop(s);
	for (size_t i = 0; i < npacks; i++) {
		if (packs[i].live && !packs[i].rewrite)
			continue;
		vmrs_pack_path(s, packs[i].id, path, sizeof(path));
		if (!unlink(path)) {
			st->bytes_freed += packs[i].size - packs[i].live;
			if (packs[i].live)
				st->packs_rewritten++;
			else
				st->packs_removed++;
		}
	}
	ret = vmrs_sync_packs(s) ? -1 : 0;
out:
	vmrs_pack_abort(&w);
	free(buf);
	free(packs);
	free(nb);
	return ret;
}
