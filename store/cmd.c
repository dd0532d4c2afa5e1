// SPDX-License-Identifier: GPL-2.0
/*
 * cmd.c - save, load and verify, with the block work spread over worker
 * threads (one per core by default)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/vmreset.h>

#include "cmd.h"
#include "store.h"
#include "util.h"
#include "vmreset_bpf.h"

enum job_op { OP_SAVE, OP_LOAD, OP_VERIFY };

/*
 * The IDs a save has claimed, so two threads never store one block twice.
 * A slot holds 1 + the index of the manifest entry whose ID it claims
 * (0 = free) in its low 40 bits, and 24 other bits of that ID above: 8
 * bytes a slot instead of the 33 of a copy of the ID, which for an object
 * of 100 M blocks is 2 GB of table instead of 9. The tag spares a probe
 * that meets another ID the read of that entry (a cache miss: a third
 * of the claims' time).
 */
#define SLOT_INDEX	((1ULL << 40) - 1)
struct idset {
	pthread_mutex_t lock;
	uint64_t cap;
	uint64_t *slot;
	const struct vmrs_entry *e;
};

struct job {
	enum job_op op;
	const char *what;
	struct vmrs_store *s;
	struct vmrs_manifest *m;
	const struct vmrs_manifest *base;
	int fd;
	bool write_zeros;
	bool partial;
	const uint8_t *salt;
	const uint8_t *dirty;		/* save: blocks to read; NULL = all */
	const uint8_t *in_map;		/* save: the input mapped, or NULL: pread it */
	struct idset ids;
	uint64_t stop_mid;		/* test hook: stop after this many blocks */
	uint32_t chunk;			/* blocks a worker takes at a time */
	uint32_t out_unit;		/* load: the target's preferred write size, or 0 */
	uint64_t lo, hi;		/* the blocks the workers run over now */
	struct vmrs_loc *loc;		/* directory load/verify: block lo + k is at loc[k] */
	bool map_packs;			/* directory load/verify: open blocks in mapped packs */
	atomic_bool stopped;		/* test hook load-mapped fired, or not asked for */
	atomic_uint_fast64_t next, done_blocks;
	atomic_uint_fast64_t zero, written, dedup, same, repaired, stored, bytes;
	atomic_int errors;
	atomic_bool abort;
	pthread_mutex_t lock;
	pthread_mutex_t write_lock;	/* load: one pwrite into the target at a time */
	bool write_late;		/* test hook: every chunk's write waits for the next */
	struct vmrs_newblock *nb;	/* save: blocks to add to the index */
	uint64_t nnb, nbcap;
	struct vmrs_pack_writer *packs;
	int npacks;
	double start, last;
	bool tty;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * A test hook: VMRESET_STORE_STOP_AT=STAGE makes a save stop itself with
 * SIGSTOP at that point (before-blocks, mid-blocks, after-blocks,
 * before-manifest; a load: load-mapped, once its first run of blocks is
 * mapped), so a test can kill it, or change the store, exactly there.
 */
static void stop_at(const char *stage)
{
	const char *want = getenv("VMRESET_STORE_STOP_AT");

	if (want && !strcmp(want, stage))
		raise(SIGSTOP);
}

/*
 * A mapped pack or input that is cut shorter under a load or save (or
 * whose disk fails a read) raises SIGBUS where it is read. The thread
 * arms bus_jmp first; the handler jumps back there (open_mapped(),
 * save_chunk()). A SIGBUS anywhere else is a bug: the default action, a
 * core dump, is taken.
 */
static _Thread_local sigjmp_buf *bus_jmp;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (bus_jmp)
		siglongjmp(*bus_jmp, 1);
	signal(sig, SIG_DFL);	/* the faulting access runs again and dumps */
}

static bool sigbus_ok;

static void sigbus_install(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	sigbus_ok = !sigaction(SIGBUS, &sa, NULL);
}

/*
 * Whether a save reads its input, and a directory load its packs, through
 * mappings: by default, once the SIGBUS handler is in place;
 * VMRESET_STORE_NO_MAP=1 makes them pread as before (a comparison, and a
 * way round a filesystem whose mappings misbehave).
 */
static bool use_maps(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const char *ev = getenv("VMRESET_STORE_NO_MAP");

	if (ev && *ev && strcmp(ev, "0"))
		return false;
	pthread_once(&once, sigbus_install);
	return sigbus_ok;
}

/*
 * Opens a block that lies in a mapping: 0, -EBADMSG (it does not
 * authenticate) or -EFAULT (the page is gone: SIGBUS). Nothing the
 * interrupted open held needs undoing: the next one sets its context up
 * from the key again.
 */
static int open_mapped(struct vmrs_crypto *c, const uint8_t *key, const uint8_t *src,
		       size_t len, uint8_t *plain)
{
	sigjmp_buf jb;
	int ret;

	if (sigsetjmp(jb, 0)) {
		bus_jmp = NULL;
		return -EFAULT;
	}
	bus_jmp = &jb;
	ret = vmrs_block_open(c, key, src, len, plain);
	bus_jmp = NULL;
	return ret ? -EBADMSG : 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

static int idset_init(struct idset *t, uint64_t n, const struct vmrs_entry *e)
{
	if (n >= SLOT_INDEX)
		return -1;
	t->cap = 16;
	while (t->cap < 2 * n)
		t->cap <<= 1;
	pthread_mutex_init(&t->lock, NULL);
	t->e = e;
	t->slot = calloc(t->cap, sizeof(*t->slot));
	return t->slot ? 0 : -1;
}

static void idset_free(struct idset *t)
{
	free(t->slot);
	if (t->cap)
		pthread_mutex_destroy(&t->lock);
}

/*
 * True if entry @i's ID was not in the set (the caller then stores the
 * block). An entry's ID is written before it is claimed and not changed
 * after, and the mutex orders that write before another thread's compare.
 */
static bool idset_claim(struct idset *t, uint64_t i)
{
	const uint8_t *id = t->e[i].id;
	uint64_t h, tag, v, mask = t->cap - 1;
	bool fresh = true;

	memcpy(&h, id, 8);	/* IDs are MAC outputs: uniform */
	memcpy(&tag, id + 8, 8);
	tag <<= 40;
	pthread_mutex_lock(&t->lock);
	for (h &= mask; (v = t->slot[h]); h = (h + 1) & mask)
		if ((v & ~SLOT_INDEX) == tag &&
		    !memcmp(t->e[(v & SLOT_INDEX) - 1].id, id, VMRS_HASH_LEN)) {
			fresh = false;
			break;
		}
	if (fresh)
		t->slot[h] = tag | (i + 1);
	pthread_mutex_unlock(&t->lock);
	return fresh;
}

/* The slot a claim of @id probes first, fetched while the batch is sealed. */
static void idset_prefetch(const struct idset *t, const uint8_t *id)
{
	uint64_t h;

	memcpy(&h, id, 8);
	__builtin_prefetch(&t->slot[h & (t->cap - 1)], 1);
}

static void block_error(struct job *j, uint64_t i, const char *why)
{
	char hex[2 * VMRS_HASH_LEN + 1];

	vmrs_hex(j->m->e[i].id, VMRS_HASH_LEN, hex);
	pthread_mutex_lock(&j->lock);
	vmrs_err("%s: block %" PRIu64 " (offset %" PRIu64 ", id %s): %s", j->what, i,
		 i * j->m->block_size, hex, why);
	pthread_mutex_unlock(&j->lock);
	atomic_fetch_add(&j->errors, 1);
	if (!j->partial)
		atomic_store(&j->abort, true);
}

static void progress(struct job *j, bool final)
{
	double t = now();
	uint64_t done = atomic_load(&j->bytes);

	if (!j->tty || (!final && t - j->last < 0.5) || t - j->start < 1)
		return;
	j->last = t;
	fprintf(stderr, "\r%s: %3d%% %" PRIu64 " MiB, %.0f MiB/s%s", j->what,
		(int)(j->m->size ? done * 100 / j->m->size : 100), done >> 20,
		done / (t - j->start) / 1048576, final ? "\n" : "");
}

struct worker {
	struct job *j;
	struct vmrs_crypto *c;
	void *rtxn;
	struct vmrs_pack_writer *pw;
	uint8_t *plain, *sealed, *check;
	uint8_t (*ids)[VMRS_HASH_LEN];	/* RADOS: a chunk's IDs to look up */
	struct vmrs_loc *locs;		/* RADOS: a chunk's blocks to fetch; else their places */
	uint8_t *runs;			/* load, directory store: the chunk's sealed blocks */
	const uint8_t **src;		/* where in @runs block i0 + k is; NULL = read it alone */
	/*
	 * Load: the runs of blocks [a, b) of the chunk at @plain to write, and
	 * a chunk decrypted earlier whose write waits (@npend runs at @pend).
	 */
	struct wrun { uint64_t a, b; } *out, *pend_out;
	size_t nout, npend;
	uint64_t pend_i0;
	uint8_t *pend;
	bool first;
};

static int add_new(struct job *j, const uint8_t *id, const struct vmrs_loc *loc, bool replace)
{
	int ret = 0;

	pthread_mutex_lock(&j->lock);
	if (j->nnb == j->nbcap) {
		uint64_t cap = j->nbcap ? 2 * j->nbcap : 1024;
		struct vmrs_newblock *g = realloc(j->nb, cap * sizeof(*g));

		if (g) {
			j->nb = g;
			j->nbcap = cap;
		} else {
			ret = -ENOMEM;
		}
	}
	if (!ret) {
		memcpy(j->nb[j->nnb].id, id, VMRS_HASH_LEN);
		j->nb[j->nnb].loc = *loc;
		j->nb[j->nnb].replace = replace;
		j->nnb++;
	}
	pthread_mutex_unlock(&j->lock);
	return ret;
}

/* Block @i, named already (name_run), @len bytes at @plain. */
static int save_block(struct worker *w, uint64_t i, size_t len, const uint8_t *plain)
{
	struct job *j = w->j;
	struct vmrs_entry *e = &j->m->e[i];
	struct vmrs_loc loc;
	bool replace = false;
	uint8_t *out;
	int ret;

	if (vmrs_entry_is_zero(e)) {
		atomic_fetch_add(&j->zero, 1);
		return 0;
	}
	/* Unchanged from the base: the base keeps that block alive. */
	if (j->base && i < j->base->nblocks &&
	    !memcmp(e, &j->base->e[i], sizeof(*e))) {
		atomic_fetch_add(&j->same, 1);
		return 0;
	}
	if (!idset_claim(&j->ids, i)) {
		atomic_fetch_add(&j->dedup, 1);
		return 0;
	}
	if (!vmrs_index_get(j->s, w->rtxn, e->id, &loc)) {
		/*
		 * A stored copy is only trusted once it authenticates with the
		 * key this save derived: a truncated or damaged one is
		 * replaced, not shared.
		 */
		if (loc.len == len + VMRS_TAG_LEN &&
		    !vmrs_block_get(j->s, w->rtxn, &loc, w->sealed, false) &&
		    !vmrs_block_open(w->c, e->key, w->sealed, len, w->check)) {
			atomic_fetch_add(&j->dedup, 1);
			return 0;
		}
		/* A host's cached copy may be the damaged one: ask RADOS itself. */
		if (j->s->rados && loc.len == len + VMRS_TAG_LEN &&
		    !vmrs_block_get(j->s, w->rtxn, &loc, w->sealed, true) &&
		    !vmrs_block_open(w->c, e->key, w->sealed, len, w->check)) {
			atomic_fetch_add(&j->dedup, 1);
			return 0;
		}
		pthread_mutex_lock(&j->lock);
		{
			char hex[2 * VMRS_HASH_LEN + 1];

			vmrs_hex(e->id, VMRS_HASH_LEN, hex);
			vmrs_err("%s: block %" PRIu64 ": the stored copy (id %s) is damaged; storing it again",
				 j->what, i, hex);
		}
		pthread_mutex_unlock(&j->lock);
		replace = true;
		atomic_fetch_add(&j->repaired, 1);
	}
	/* Sealed straight into the pack's buffer. */
	out = vmrs_pack_reserve(w->pw, (uint32_t)(len + VMRS_TAG_LEN), &loc, &ret);
	if (out && vmrs_block_seal(w->c, e->key, plain, len, out))
		return -EIO;
	if (!ret)
		ret = add_new(j, e->id, &loc, replace);
	if (ret) {
		vmrs_err("%s: storing block %" PRIu64 ": %s", j->what, i, strerror(-ret));
		return ret;
	}
	atomic_fetch_add(&j->written, 1);
	atomic_fetch_add(&j->stored, len + VMRS_TAG_LEN);
	return 0;
}

static size_t block_len(const struct job *j, uint64_t i)
{
	uint64_t off = i * j->m->block_size;

	return j->m->size - off < j->m->block_size ? j->m->size - off : j->m->block_size;
}

/*
 * How many whole blocks from @i on lie in a hole the filesystem knows of
 * (SEEK_DATA): zero blocks that need no read. Files that do not track
 * holes (vmresetfs, devices) report data everywhere, or an error: 0.
 * -ENODATA when there is no data because the file ended early: one cut
 * during the save must fail it, not be stored as zeros.
 */
static int64_t hole_blocks(const struct job *j, uint64_t i, uint64_t i1)
{
	off_t off = (off_t)(i * j->m->block_size), d = lseek(j->fd, off, SEEK_DATA);
	uint64_t n;
	struct stat st;

	if (d < 0 && errno == ENXIO) {
		if (!fstat(j->fd, &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size < j->m->size)
			return -ENODATA;
		n = i1 - i;	/* no data from @off to the end */
	} else if (d < 0) {
		n = 0;
	} else {
		n = d > off ? (uint64_t)(d - off) / j->m->block_size : 0;
	}
	return (int64_t)(n < i1 - i ? n : i1 - i);
}

/* The one message of a save whose input got shorter under it: -ENODATA. */
static int shrank(const struct job *j, const char *how, uint64_t off)
{
	vmrs_err("%s: file shrank during the save (%s at offset %" PRIu64 ")", j->what, how, off);
	return -ENODATA;
}

static void block_done(struct job *j)
{
	if (j->stop_mid && atomic_fetch_add(&j->done_blocks, 1) + 1 == j->stop_mid)
		stop_at("mid-blocks");
}

/*
 * Names blocks @i0..@i1-1, which lie at @buf from block @first on (zero
 * blocks get a zero entry), a batch of up to VMRS_NAME_BATCH blocks of
 * one length at a time: with AVX-512 their SHA-256 runs 16 lanes wide,
 * 2.5 times what SHA-NI does one block at a time on this CPU.
 */
static int name_run(struct worker *w, const uint8_t *buf, uint64_t first, uint64_t i0,
		    uint64_t i1)
{
	struct job *j = w->j;
	uint32_t bs = j->m->block_size;
	uint8_t key[VMRS_NAME_BATCH][VMRS_KEY_LEN], id[VMRS_NAME_BATCH][VMRS_HASH_LEN];
	const uint8_t *p[VMRS_NAME_BATCH];
	uint64_t at[VMRS_NAME_BATCH];
	size_t n = 0, len = 0;

	for (uint64_t k = i0; k <= i1; k++) {
		size_t bl = k < i1 ? block_len(j, k) : 0;
		const uint8_t *b = buf + (k - first) * bs;

		if (n && (k == i1 || n == VMRS_NAME_BATCH || bl != len)) {
			if (vmrs_block_name_many(w->c, p, len, n, key, id))
				return -1;
			for (size_t x = 0; x < n; x++) {
				memcpy(j->m->e[at[x]].key, key[x], VMRS_KEY_LEN);
				memcpy(j->m->e[at[x]].id, id[x], VMRS_HASH_LEN);
				idset_prefetch(&j->ids, id[x]);
			}
			n = 0;
		}
		if (k == i1)
			break;
		if (all_zero(b, bl)) {
			memset(&j->m->e[k], 0, sizeof(j->m->e[k]));
			continue;
		}
		len = bl;
		p[n] = b;
		at[n++] = k;
	}
	return 0;
}

/*
 * Save: read each run of wanted blocks of the chunk with one pread, or
 * find it in the mapped input.
 */
static int save_runs(struct worker *w, uint64_t i0, uint64_t i1)
{
	struct job *j = w->j;
	uint32_t bs = j->m->block_size;
	int ret;

	for (uint64_t i = i0; i < i1;) {
		uint64_t r = i;
		size_t len = 0;
		off_t off = (off_t)(i * bs);
		const uint8_t *buf;
		int64_t h;

		if (j->dirty && !j->dirty[i]) {
			i++;
			continue;
		}
		h = hole_blocks(j, i, i1);
		if (h < 0)
			return shrank(j, "no data", (uint64_t)off);
		for (; h; h--, i++) {
			if (j->dirty && !j->dirty[i])
				continue;
			memset(&j->m->e[i], 0, sizeof(j->m->e[i]));
			atomic_fetch_add(&j->zero, 1);
			block_done(j);
		}
		if (i == i1 || (j->dirty && !j->dirty[i]))
			continue;
		/*
		 * No SEEK_HOLE for where the data ends: tmpfs finds a hole by
		 * walking the pages up to it, which from every chunk of a full
		 * file doubled a save's system time.
		 */
		off = (off_t)(i * bs);
		r = i;
		while (r < i1 && (!j->dirty || j->dirty[r]))
			len += block_len(j, r++);
		if (j->in_map) {
			buf = j->in_map + off;
		} else {
			buf = w->plain;
			ret = vmrs_pread_all(j->fd, w->plain, len, off);
			if (ret == -ENODATA)
				return shrank(j, "a short read", (uint64_t)off);
			if (ret) {
				vmrs_err("%s: read at offset %jd: %s", j->what, (intmax_t)off,
					 strerror(-ret));
				return ret;
			}
		}
		/* RADOS: name the run's blocks first and look them up all at once. */
		if (j->s->rados) {
			size_t nid = 0;

			if (name_run(w, buf, i, i, r))
				return -EIO;

			for (uint64_t k = i; k < r; k++) {
				struct vmrs_entry *e = &j->m->e[k];

				if (vmrs_entry_is_zero(e))
					continue;
				if (j->base && k < j->base->nblocks &&
				    !memcmp(e, &j->base->e[k], sizeof(*e)))
					continue;
				memcpy(w->ids[nid++], e->id, VMRS_HASH_LEN);
			}
			ret = vmrs_index_prefetch(j->s, w->rtxn,
						  (const uint8_t (*)[VMRS_HASH_LEN])w->ids, nid);
			if (ret) {
				vmrs_err("%s: looking up blocks in '%s': %s", j->what, j->s->root,
					 vmrs_store_strerror(j->s, ret));
				return ret;
			}
		}
		/*
		 * A directory store names a batch and seals it while it is
		 * still in the L1/L2 cache (naming a whole run first cost a
		 * third more CPU).
		 */
		for (uint64_t at = i; i < r; i++) {
			if (!j->s->rados && !((i - at) % VMRS_NAME_BATCH) &&
			    name_run(w, buf, at, i, i + VMRS_NAME_BATCH < r ? i + VMRS_NAME_BATCH : r))
				return -EIO;
			ret = save_block(w, i, block_len(j, i), buf + (i - at) * bs);
			if (ret)
				return ret;
			block_done(j);
		}
	}
	return 0;
}

/*
 * A mapped input that is cut shorter under the save raises SIGBUS where
 * a block is named or sealed. Nothing in save_runs() holds a lock while
 * it reads the input, and the failed save writes no manifest: the jump
 * back here just ends it.
 */
static int save_chunk(struct worker *w, uint64_t i0, uint64_t i1)
{
	sigjmp_buf jb;
	int ret;

	if (!w->j->in_map)
		return save_runs(w, i0, i1);
	if (sigsetjmp(jb, 0)) {
		bus_jmp = NULL;
		return shrank(w->j, "a page cut off in the chunk", i0 * w->j->m->block_size);
	}
	bus_jmp = &jb;
	ret = save_runs(w, i0, i1);
	bus_jmp = NULL;
	return ret;
}

/* Blocks @run..@end-1 of the chunk are to be written (load_chunk's end: submit). */
static void queue_run(struct worker *w, uint64_t run, uint64_t end)
{
	if (w->j->op == OP_LOAD && run < end)
		w->out[w->nout++] = (struct wrun){ run, end };
}

static int write_runs(struct worker *w, const uint8_t *buf, uint64_t i0,
		      const struct wrun *r, size_t n)
{
	struct job *j = w->j;
	uint32_t bs = j->m->block_size;
	int ret = 0;

	for (size_t x = 0; x < n && !ret; x++) {
		size_t len = 0;

		for (uint64_t k = r[x].a; k < r[x].b; k++)
			len += block_len(j, k);
		ret = vmrs_pwrite_all(j->fd, buf + (r[x].a - i0) * bs, len, (off_t)(r[x].a * bs));
		if (ret)
			vmrs_err("%s: write at offset %jd: %s", j->what, (intmax_t)(r[x].a * bs),
				 strerror(-ret));
	}
	return ret;
}

/* The chunk whose write waits, if any, once the target is free. */
static int write_pending(struct worker *w)
{
	int ret;

	if (!w->npend)
		return 0;
	pthread_mutex_lock(&w->j->write_lock);
	ret = write_runs(w, w->pend, w->pend_i0, w->pend_out, w->npend);
	pthread_mutex_unlock(&w->j->write_lock);
	w->npend = 0;
	return ret;
}

/*
 * Writes the chunk just decrypted, or leaves it for after the next one.
 * Writes into one file take its inode lock (tmpfs, ext4, xfs), so two
 * threads' pwrites run one at a time, and the second spun in
 * rwsem_spin_on_owner (16% of a two-thread load's CPU on a 4 KiB-page
 * tmpfs): a thread that finds the target busy decrypts its next chunk
 * instead. The writes still go one at a time (the same wall time), with
 * a tenth less CPU. Alone, a thread always writes at once, from the
 * buffer still in L2. VMRESET_STORE_WRITE_LATE=1 makes every chunk wait, so that tests reach
 * the path two threads take only when their writes meet.
 */
static int submit(struct worker *w, uint64_t i0)
{
	struct job *j = w->j;
	uint8_t *b;
	struct wrun *r;
	int ret = write_pending(w);

	if (ret || !w->nout)
		return ret;
	if (!w->pend) {
		/* RADOS: no second chunk (up to 16 MiB a thread); the wait sleeps. */
		pthread_mutex_lock(&j->write_lock);
	} else if (j->write_late || pthread_mutex_trylock(&j->write_lock)) {
		b = w->pend;
		w->pend = w->plain;
		w->plain = b;
		r = w->pend_out;
		w->pend_out = w->out;
		w->out = r;
		w->npend = w->nout;
		w->pend_i0 = i0;
		w->nout = 0;
		return 0;
	}
	ret = write_runs(w, w->plain, i0, w->out, w->nout);
	pthread_mutex_unlock(&j->write_lock);
	w->nout = 0;
	return ret;
}

/*
 * Directory store: look the chunk's blocks up, then read each run of them
 * that lies back to back in one pack (a save writes a chunk's new blocks
 * in order) with one pread instead of one per block. A run that cannot be
 * read is left to the per-block path, which names what is wrong.
 */
static void read_runs(struct worker *w, uint64_t i0, uint64_t i1)
{
	struct job *j = w->j;
	struct vmrs_loc *l = w->locs;
	size_t used = 0;

	for (uint64_t k = i0; k < i1; k++) {
		const struct vmrs_entry *e = &j->m->e[k];

		w->src[k - i0] = NULL;
		if (j->loc)
			l[k - i0] = j->loc[k - j->lo];	/* len 0: zero or missing */
		if (vmrs_entry_is_zero(e) ||
		    (!j->loc && vmrs_index_get(j->s, w->rtxn, e->id, &l[k - i0])) ||
		    l[k - i0].len != block_len(j, k) + VMRS_TAG_LEN)
			l[k - i0].len = 0;
	}
	for (uint64_t i = i0, r; i < i1; i = r) {
		size_t len = l[i - i0].len, size;
		const uint8_t *map;

		r = i + 1;
		if (!len)
			continue;
		while (r < i1 && l[r - i0].len && l[r - i0].pack == l[i - i0].pack &&
		       l[r - i0].off == l[i - i0].off + len)
			len += l[r++ - i0].len;
		/* Mapped: the blocks are opened where they lie, no copy. */
		if (j->map_packs && (map = vmrs_pack_map(j->s, l[i - i0].pack, &size)) &&
		    l[i - i0].off <= size && len <= size - l[i - i0].off) {
			for (uint64_t k = i, off = l[i - i0].off; k < r; off += l[k++ - i0].len)
				w->src[k - i0] = map + off;
			if (!atomic_load(&j->stopped) && !atomic_exchange(&j->stopped, true))
				stop_at("load-mapped");
			continue;
		}
		if (vmrs_pack_read(j->s, l[i - i0].pack, l[i - i0].off, len, w->runs + used))
			continue;
		for (uint64_t k = i; k < r; k++) {
			w->src[k - i0] = w->runs + used;
			used += l[k - i0].len;
		}
	}
}

/*
 * Load/verify: decrypt into the chunk buffer and write each run of blocks
 * with one pwrite; zero blocks of a fresh target (holes) and bad blocks
 * (with --partial) end a run and are not written.
 */
static int load_chunk(struct worker *w, uint64_t i0, uint64_t i1)
{
	struct job *j = w->j;
	uint32_t bs = j->m->block_size;
	uint64_t run = i0;
	struct vmrs_loc loc;
	int ret;

	/* RADOS: the chunk's index entries in one round trip, its blocks in a second. */
	if (j->s->rados) {
		size_t nid = 0, nl = 0;

		for (uint64_t i = i0; i < i1; i++)
			if (!vmrs_entry_is_zero(&j->m->e[i]))
				memcpy(w->ids[nid++], j->m->e[i].id, VMRS_HASH_LEN);
		ret = vmrs_index_prefetch(j->s, w->rtxn, (const uint8_t (*)[VMRS_HASH_LEN])w->ids,
					  nid);
		for (uint64_t i = i0; i < i1 && !ret; i++)
			if (!vmrs_entry_is_zero(&j->m->e[i]) &&
			    !vmrs_index_get(j->s, w->rtxn, j->m->e[i].id, &loc) &&
			    loc.len == block_len(j, i) + VMRS_TAG_LEN)
				w->locs[nl++] = loc;
		if (!ret)
			ret = vmrs_block_prefetch(j->s, w->rtxn, w->locs, nl);
		if (ret) {
			vmrs_err("%s: reading from '%s': %s", j->what, j->s->root,
				 vmrs_store_strerror(j->s, ret));
			return ret;
		}
	} else {
		read_runs(w, i0, i1);
	}
	for (uint64_t i = i0; i < i1; i++) {
		struct vmrs_entry *e = &j->m->e[i];
		size_t len = block_len(j, i);
		uint8_t *plain = w->plain + (i - i0) * bs;
		const char *bad = NULL;

		if (vmrs_entry_is_zero(e)) {
			if (j->write_zeros) {
				memset(plain, 0, len);
				continue;
			}
		} else if (w->src && w->src[i - i0] &&
			   (j->map_packs ? !open_mapped(w->c, e->key, w->src[i - i0], len, plain) :
			    !vmrs_block_open(w->c, e->key, w->src[i - i0], len, plain))) {
			continue;
		/*
		 * A block that fails from the run (or its mapping) is read again
		 * on its own, so that the error says what is wrong with it.
		 */
		} else if (vmrs_index_get(j->s, w->rtxn, e->id, &loc)) {
			bad = "missing from the store";
		} else if (loc.len != len + VMRS_TAG_LEN) {
			/* Checked before the read: w->sealed holds one block. */
			bad = "damaged index entry (wrong length)";
		} else if ((ret = vmrs_block_get(j->s, w->rtxn, &loc, w->sealed, false)) == -ENOENT) {
			bad = "missing from the store";
		} else if (ret == -ENODATA) {
			bad = "truncated in the store";
		} else if (ret) {
			bad = vmrs_store_strerror(j->s, ret);
		} else if (vmrs_block_open(w->c, e->key, w->sealed, len, plain) &&
			   (!j->s->rados ||
			    /* the host cache's copy may be the bad one: RADOS's */
			    vmrs_block_get(j->s, w->rtxn, &loc, w->sealed, true) ||
			    vmrs_block_open(w->c, e->key, w->sealed, len, plain))) {
			bad = "tampered (authentication failed)";
		} else {
			continue;
		}
		if (bad)
			block_error(j, i, bad);
		queue_run(w, run, i);
		run = i + 1;
	}
	queue_run(w, run, i1);
	return submit(w, i0);
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	struct job *j = w->j;
	uint32_t bs = j->m->block_size;
	bool first = w->first;
	uint64_t i;

	w->plain = malloc((size_t)j->chunk * bs);
	if (j->op == OP_LOAD) {
		w->out = malloc((size_t)j->chunk * sizeof(*w->out));
		if (!j->s->rados) {
			w->pend = malloc((size_t)j->chunk * bs);
			w->pend_out = malloc((size_t)j->chunk * sizeof(*w->pend_out));
		}
	}
	w->sealed = malloc(bs + VMRS_TAG_LEN);
	w->check = malloc(bs);
	w->ids = malloc((size_t)j->chunk * VMRS_HASH_LEN);
	w->locs = malloc((size_t)j->chunk * sizeof(*w->locs));
	w->c = vmrs_crypto_new(j->salt);
	w->rtxn = vmrs_index_reader(j->s);
	if (j->op != OP_SAVE && !j->s->rados) {
		w->runs = malloc((size_t)j->chunk * (bs + VMRS_TAG_LEN));
		w->src = malloc((size_t)j->chunk * sizeof(*w->src));
	}
	if (!w->plain || !w->sealed || !w->check || !w->ids || !w->locs || !w->c || !w->rtxn ||
	    (j->op != OP_SAVE && !j->s->rados && (!w->runs || !w->src)) ||
	    (j->op == OP_LOAD && (!w->out || (!j->s->rados && (!w->pend || !w->pend_out))))) {
		vmrs_err("%s: %s", j->what, w->rtxn ? "out of memory" :
			 "cannot read the block index (too many readers?)");
		atomic_store(&j->abort, true);
		atomic_fetch_add(&j->errors, 1);
	}
	while (!atomic_load(&j->abort) &&
	       (i = j->lo + atomic_fetch_add(&j->next, 1) * j->chunk) < j->hi) {
		uint64_t end = i + j->chunk < j->hi ? i + j->chunk : j->hi;

		if (j->op == OP_SAVE ? save_chunk(w, i, end) : load_chunk(w, i, end)) {
			atomic_fetch_add(&j->errors, 1);
			atomic_store(&j->abort, true);
		}
		atomic_fetch_add(&j->bytes, (end - i) * bs);
		/* One thread reports, so lines do not interleave. */
		if (first)
			progress(j, false);
	}
	/* A failed load (a write failed, or a bad block without --partial) needs no more writes. */
	if (!atomic_load(&j->abort) && write_pending(w)) {
		atomic_fetch_add(&j->errors, 1);
		atomic_store(&j->abort, true);
	}
	vmrs_index_reader_end(j->s, w->rtxn);
	vmrs_crypto_free(w->c);
	free(w->plain);
	free(w->pend);
	free(w->out);
	free(w->pend_out);
	free(w->sealed);
	free(w->check);
	free(w->ids);
	free(w->locs);
	free(w->runs);
	free(w->src);
	return NULL;
}

/*
 * Blocks a load or verify looks up at once (24 bytes of location each);
 * VMRESET_STORE_LOCATE_WINDOW sets fewer, so that a test of a few dozen
 * blocks runs through several windows.
 */
#define LOCATE_WINDOW	(1U << 20)

static uint64_t locate_window(void)
{
	const char *ev = getenv("VMRESET_STORE_LOCATE_WINDOW");
	uint64_t w;

	if (!ev || vmr_parse_u64(ev, &w) || !w || w > LOCATE_WINDOW)
		return LOCATE_WINDOW;
	return w;
}

/*
 * Directory store, load/verify: the locations of blocks lo..hi-1, looked
 * up in ID order (index.c says why) before the workers start on them.
 * Zero entries and IDs the index lacks get len 0; the workers' per-block
 * path then names what is wrong. Without memory for it the workers look
 * each block up themselves, as before.
 */
static void locate(struct job *j)
{
	const struct vmrs_entry *e = j->m->e + j->lo;
	uint64_t n = j->hi - j->lo, nz = 0;
	uint32_t *cnt, *order;
	void *rtxn;

	if (!j->loc)
		return;
	cnt = calloc(65537, sizeof(*cnt));
	order = malloc(n * sizeof(*order));
	rtxn = vmrs_index_reader(j->s);
	if (!cnt || !order || !rtxn)
		goto fail;
	/* IDs are uniform: a counting sort by their first 16 bits orders them well enough. */
	for (uint64_t i = 0; i < n; i++) {
		j->loc[i].len = 0;
		if (!vmrs_entry_is_zero(&e[i])) {
			cnt[(e[i].id[0] << 8 | e[i].id[1]) + 1]++;
			nz++;
		}
	}
	for (uint32_t b = 1; b <= 65536; b++)
		cnt[b] += cnt[b - 1];
	for (uint64_t i = 0; i < n; i++)
		if (!vmrs_entry_is_zero(&e[i]))
			order[cnt[e[i].id[0] << 8 | e[i].id[1]]++] = (uint32_t)i;
	if (vmrs_index_locate(j->s, rtxn, e, order, nz, j->loc))
		goto fail;
	goto out;
fail:
	free(j->loc);
	j->loc = NULL;
out:
	vmrs_index_reader_end(j->s, rtxn);
	free(cnt);
	free(order);
}

/* Runs @threads workers over blocks j->lo..j->hi-1. */
static void spawn(struct job *j, int threads)
{
	struct worker w[64] = { 0 };
	pthread_t t[64];
	int n = 0;

	atomic_store(&j->next, 0);
	w[0].first = true;
	for (int k = 0; k < threads; k++) {
		w[k].j = j;
		if (j->packs) {
			w[k].pw = &j->packs[k];
			w[k].pw->s = j->s;
		}
	}
	while (n < threads - 1 && !pthread_create(&t[n], NULL, worker, &w[n + 1]))
		n++;
	worker(&w[0]);
	while (n--)
		pthread_join(t[n], NULL);
}

static int run_job(struct job *j, int threads)
{

	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->write_lock, NULL);
	j->write_late = getenv("VMRESET_STORE_WRITE_LATE") != NULL;
	j->start = j->last = now();
	j->tty = isatty(2);
	/*
	 * A directory store's chunk is 256 KiB: what a worker reads, names
	 * and seals (or reads, opens and writes) stays in its L2 cache (a
	 * megabyte, with its sealed copy beside it, went out to L3). RADOS:
	 * a megabyte, for fewer round trips.
	 */
	j->chunk = j->s->rados ? 1U << 20 : 256U << 10;
	/*
	 * A load writes whole units of the target's preferred size: a tmpfs
	 * with huge pages says 2 MiB, and a smaller write into a fresh huge
	 * page zeroes the rest of it first (18% of a 256 MiB load's CPU,
	 * perf). With 2 MiB chunks a load there takes 2% less CPU on one
	 * thread and 21% less on two (medians of paired runs); on a 4 KiB-page
	 * tmpfs they were no faster, and 256 KiB stays in L2.
	 */
	if (j->op == OP_LOAD && j->out_unit > j->chunk)
		j->chunk = j->out_unit;
	j->chunk /= j->m->block_size;
	/*
	 * RADOS looks a chunk's IDs up with one read per index shard: keep
	 * about 8 keys per read however many shards (at most 16 MiB).
	 */
	if (j->s->rados && j->chunk < 8 * vmrs_rados_shards(j->s))
		j->chunk = 8 * vmrs_rados_shards(j->s) < (16U << 20) / j->m->block_size ?
			   8 * vmrs_rados_shards(j->s) : (16U << 20) / j->m->block_size;
	if (!j->chunk)
		j->chunk = 1;
	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	if (j->op == OP_SAVE) {
		j->packs = calloc((size_t)threads, sizeof(*j->packs));
		if (!j->packs)
			return 1;
		j->npacks = threads;
	}
	if (j->op != OP_SAVE && !j->s->rados) {
		const char *stop = getenv("VMRESET_STORE_STOP_AT");

		j->map_packs = use_maps();
		atomic_store(&j->stopped, !stop || strcmp(stop, "load-mapped"));
	}
	if (j->op == OP_SAVE || j->s->rados) {
		j->lo = 0;
		j->hi = j->m->nblocks;
		spawn(j, threads);
	} else {
		uint64_t win = locate_window();

		j->loc = malloc((j->m->nblocks < win ? j->m->nblocks : win) * sizeof(*j->loc) + 1);
		for (j->lo = 0; j->lo < j->m->nblocks && !atomic_load(&j->abort);
		     j->lo = j->hi) {
			j->hi = j->m->nblocks - j->lo < win ? j->m->nblocks : j->lo + win;
			locate(j);
			spawn(j, threads);
		}
		free(j->loc);
		j->loc = NULL;
	}
	progress(j, true);
	return atomic_load(&j->errors);
}

static void job_free(struct job *j)
{
	for (int k = 0; k < j->npacks; k++)
		vmrs_pack_abort(&j->packs[k]);
	free(j->packs);
	free(j->nb);
	idset_free(&j->ids);
}

static void default_selector(const struct vmrs_store *s, char *buf, size_t len)
{
	char host[256] = "";
	const char *user = getenv("USER");
	long day = (long)(time(NULL) / 86400);

	gethostname(host, sizeof(host) - 1);
	if (!user)
		user = "";
	switch (s->salt_mode) {
	case SALT_USER:
		snprintf(buf, len, "user:%u:%s", getuid(), user);
		break;
	case SALT_TIME:
		snprintf(buf, len, "time:%ld", day);
		break;
	case SALT_LOCATION:
		snprintf(buf, len, "location:%s", host);
		break;
	default:
		snprintf(buf, len, "mix:%u:%s:%ld:%s", getuid(), user, day, host);
	}
}

/* A block device's size in bytes (st_size is 0 for one); 0 or -1, said why. */
static int device_size(const char *file, int fd, uint64_t *size)
{
	if (!ioctl(fd, BLKGETSIZE64, size))
		return 0;
	vmrs_err("'%s': device size: %s", file, strerror(errno));
	return -1;
}

static void mark(uint8_t *dirty, uint64_t nblocks, uint32_t bs, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	for (uint64_t b = off / bs; b <= (off + len - 1) / bs && b < nblocks; b++)
		dirty[b] = 1;
}

static int read_dirty_file(const struct vmrs_opts *o, uint8_t *dirty, uint64_t nblocks,
			   uint32_t bs)
{
	FILE *f = fopen(o->dirty_file, "r");
	char line[256], copy[256], *tok[3], *save;
	uint64_t off, len;
	int ln = 0, n;

	if (!f) {
		vmrs_err("dirty list '%s': %s", o->dirty_file, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		ln++;
		line[strcspn(line, "\n")] = 0;
		if (line[0] == '#' || !line[0])
			continue;
		snprintf(copy, sizeof(copy), "%s", line);
		n = 0;
		for (char *t = strtok_r(copy, " \t", &save); t && n < 3;
		     t = strtok_r(NULL, " \t", &save))
			tok[n++] = t;
		if (n != 2 || vmr_parse_u64(tok[0], &off) || vmr_parse_u64(tok[1], &len) ||
		    off + len < off) {
			vmrs_err("dirty list '%s' line %d: expected 'OFFSET LENGTH', got '%s'",
				 o->dirty_file, ln, line);
			fclose(f);
			return -1;
		}
		mark(dirty, nblocks, bs, off, len);
	}
	fclose(f);
	return 0;
}

/*
 * The pages a save --base must read: DIRTY lists the pages written since
 * the last snapshot or revert, but a hot page only while it differs from
 * its snapshot copy; one changed when the base was saved and changed back
 * since is in no dirty list, yet differs from the base. So every page hot
 * now is read too. A page hot at the base and demoted since is in neither
 * list; check_base_ident refuses a base when the file's demotion counter
 * moved, so every page hot at any time since the base is hot now.
 */
static int read_list_ioctl(const char *file, int fd, unsigned long req, const char *what,
			   uint8_t *dirty, uint64_t nblocks, uint32_t bs)
{
	struct vmreset_range r[1024];
	struct vmreset_range_list l = { .cursor = 0 };

	do {
		l.ranges = (uintptr_t)r;
		l.nr = 1024;
		if (ioctl(fd, req, &l)) {
			vmrs_err("'%s': no %s list: %s", file, what, strerror(errno));
			return -1;
		}
		for (uint32_t k = 0; k < l.nr; k++)
			mark(dirty, nblocks, bs, r[k].offset, r[k].length);
	} while (l.cursor != VMRESET_CURSOR_END && l.nr);
	return 0;
}

static int read_dirty_ioctl(const char *file, int fd, uint8_t *dirty, uint64_t nblocks,
			    uint32_t bs)
{
	struct vmreset_features f = { .size = sizeof(f) };

	if (read_list_ioctl(file, fd, VMRESET_IOC_DIRTY, "dirty", dirty, nblocks, bs))
		return -1;
	if (ioctl(fd, VMRESET_IOC_FEATURES, &f) || !(f.features & VMRESET_FEATURE_HOT))
		return 0;	/* a module without hot pages: DIRTY is exact */
	return read_list_ioctl(file, fd, VMRESET_IOC_HOT_LIST, "hot page", dirty, nblocks, bs);
}

static int read_preserved(const char *file, int fd, struct vmrs_manifest *m)
{
	static struct vmreset_range r[VMRESET_MAX_PRESERVED];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r,
					.nr = VMRESET_MAX_PRESERVED };

	if (ioctl(fd, VMRESET_IOC_PRESERVE_LIST, &l)) {
		vmrs_err("'%s': preserved ranges: %s", file, strerror(errno));
		return -1;
	}
	if (!l.nr)
		return 0;
	m->ranges = malloc(l.nr * sizeof(*m->ranges));
	if (!m->ranges)
		return -1;
	for (uint32_t k = 0; k < l.nr; k++) {
		m->ranges[k].offset = r[k].offset;
		m->ranges[k].length = r[k].length;
	}
	m->nranges = l.nr;
	return 0;
}

static void boot_id(uint8_t out[16])
{
	char buf[64] = "", hex[33];
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	int n = 0;

	memset(out, 0, 16);
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f))
		for (char *p = buf; *p && n < 32; p++)
			if (*p != '-' && *p != '\n')
				hex[n++] = *p;
	fclose(f);
	hex[n] = 0;
	if (n == 32)
		vmrs_unhex(hex, out, 16);
}

/* A vmresetfs file's identity and counters; false for any other file. */
static bool file_ident(int fd, const struct stat *st, struct vmrs_ident *id, bool *has_snap)
{
	struct vmreset_stats vs = { .size = sizeof(vs) };

	if (!S_ISREG(st->st_mode) || ioctl(fd, VMRESET_IOC_STATS, &vs))
		return false;
	*has_snap = vs.flags & VMRESET_STATS_F_SNAPSHOT;
	boot_id(id->boot_id);
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->obj_id = vs.id;
	id->snapshots = vs.snapshots;
	id->reverts = vs.reverts;
	id->hot_demotions = vs.hot_demotions;
	id->has_hot = true;
	return true;
}

/*
 * The dirty list of a vmresetfs file covers the writes since its last
 * snapshot or revert. It completes a base only if that base was saved
 * from this very object after that same snapshot and revert.
 */
static int check_base_ident(const char *file, const char *base_name,
			    const struct vmrs_manifest *base, const struct vmrs_ident *cur)
{
	const struct vmrs_ident *b = &base->ident;

	if (!base->has_ident) {
		vmrs_err("base '%s' was not saved from a vmresetfs file: its dirty list cannot "
			 "complete it (save without --base, or pass --dirty FILE)", base_name);
		return -1;
	}
	if (memcmp(b->boot_id, cur->boot_id, 16) || b->dev != cur->dev || b->ino != cur->ino ||
	    b->obj_id != cur->obj_id) {
		vmrs_err("base '%s' was saved from another object than '%s' (or before a reboot): "
			 "its dirty list cannot complete it; save without --base", base_name, file);
		return -1;
	}
	if (b->snapshots != cur->snapshots || b->reverts != cur->reverts) {
		vmrs_err("base '%s' was saved at snapshot %" PRIu64 ", revert %" PRIu64 " of '%s', "
			 "which is now at snapshot %" PRIu64 ", revert %" PRIu64 ": the dirty list "
			 "no longer covers the changes since the base; save without --base",
			 base_name, b->snapshots, b->reverts, file, cur->snapshots, cur->reverts);
		return -1;
	}
	/*
	 * A base saved before demotions were recorded is only complete while
	 * the file never demoted a hot page.
	 */
	if (b->has_hot ? b->hot_demotions != cur->hot_demotions : cur->hot_demotions != 0) {
		vmrs_err("hot pages of '%s' were demoted since base '%s' was saved (a demoted "
			 "page that changed back is in no dirty list): save without --base",
			 file, base_name);
		return -1;
	}
	return 0;
}

/* A file the manifest carries whole (the VM state, a profile): 4 GiB at most. */
static int read_attachment(const char *what, const char *path, uint8_t **buf, uint32_t *len)
{
	size_t n;

	*buf = (uint8_t *)vmrs_read_file(path, &n);
	if (!*buf || n > UINT32_MAX) {
		vmrs_err("%s '%s': %s", what, path, *buf ? "too large (4 GiB at most)" :
			 strerror(errno));
		return -1;
	}
	*len = (uint32_t)n;
	return 0;
}

/* Only what the tools that apply a profile accept is stored as one. */
static int check_profile(const char *path)
{
	struct vmreset_profile p;
	int line, ret = vmreset_profile_load(&p, path, &line);

	if (ret == -EINVAL && !line)
		vmrs_err("profile '%s': empty (a vmreset-profile 1 file starts with that line)",
			 path);
	else if (ret == -EINVAL && line == 1)
		vmrs_err("profile '%s' line 1: expected 'vmreset-profile 1'", path);
	else if (ret == -EINVAL)
		vmrs_err("profile '%s' line %d: expected 'r|w GPA PAGES' (page-aligned GPA, "
			 "runs ascending, not overlapping)", path, line);
	else if (ret)
		vmrs_err("profile '%s': %s", path, strerror(-ret));
	if (!ret)
		vmreset_profile_free(&p);
	return ret;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return b ? b + 1 : path;
}

int cmd_save(const char *file, const char *store, const struct vmrs_opts *o)
{
	struct vmrs_manifest m = { 0 }, base = { 0 };
	struct vmrs_store s = { .lock_fd = -1 };
	struct job j = { .op = OP_SAVE, .what = file };
	uint8_t key[VMRS_KEY_LEN], salt[VMRS_HASH_LEN], *dirty = NULL;
	const char *name = o->name ? o->name : base_name(file);
	char sel[512], dep[VMRS_MAX_NAME + 1];
	struct vmrs_ident cur, now_id;
	bool is_vmr, has_snap = false;
	struct stat st;
	int fd = -1, ret = 1, r;
	uint64_t toread;
	double t0 = now();

	if (!vmrs_name_ok(name)) {
		vmrs_err("bad snapshot name '%s' (1 to %d characters of UTF-8, no '/', no control "
			 "characters, no leading dot)", name, VMRS_MAX_NAME);
		return 2;
	}
	if (o->base && !strcmp(o->base, name)) {
		vmrs_err("--base '%s' is the snapshot being replaced: save under a new name", name);
		return 2;
	}
	if (vmrs_store_open(&s, store, false) || vmrs_key_load(o->key_file, key))
		goto out;
	r = vmrs_dependents(&s, name, dep, sizeof(dep));
	if (r < 0)
		goto out;
	if (r > 0) {
		vmrs_err("'%s' is the base of '%s'%s: it cannot be replaced (save under a new name)",
			 name, dep, r > 1 ? " and others" : "");
		goto out;
	}
	/* O_NONBLOCK: a FIFO must be refused below, not wait for a writer. */
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st)) {
		vmrs_err("'%s': %s", file, strerror(errno));
		goto out;
	}
	snprintf(m.h.name, sizeof(m.h.name), "%s", name);
	m.size = (uint64_t)st.st_size;
	/* st_size is 0 for a device or a pipe: never save those as empty. */
	if (S_ISBLK(st.st_mode)) {
		if (device_size(file, fd, &m.size))
			goto out;
	} else if (!S_ISREG(st.st_mode)) {
		vmrs_err("'%s': not a regular file or a block device", file);
		goto out;
	}
	m.block_size = s.block_size;
	m.nblocks = (m.size + m.block_size - 1) / m.block_size;
	m.e = calloc(m.nblocks + 1, sizeof(*m.e));
	if (!m.e)
		goto out;
	is_vmr = file_ident(fd, &st, &cur, &has_snap);
	if (is_vmr) {
		m.has_ident = true;
		m.ident = cur;
		if (read_preserved(file, fd, &m))
			goto out;
	}
	if (o->state_file) {
		if (read_attachment("state file", o->state_file, &m.blob, &m.blob_len))
			goto out;
		m.has_state = true;
	}
	if (o->profile_file && (check_profile(o->profile_file) ||
				read_attachment("profile", o->profile_file, &m.profile,
						&m.profile_len)))
		goto out;
	toread = m.nblocks;
	if (o->base) {
		if (vmrs_manifest_read(&s, o->base, key, &base))
			goto out;
		if (base.block_size != m.block_size) {
			vmrs_err("base '%s' has block size %u, the store %u", o->base,
				 base.block_size, m.block_size);
			goto out;
		}
		/*
		 * Without a snapshot a vmresetfs file has no dirty list (the
		 * ioctl returns an empty one): read every block instead.
		 */
		if (o->dirty_file || (is_vmr && has_snap)) {
			dirty = calloc(m.nblocks + 1, 1);
			if (!dirty)
				goto out;
			if (o->dirty_file) {
				if (read_dirty_file(o, dirty, m.nblocks, m.block_size))
					goto out;
			} else if (check_base_ident(file, o->base, &base, &cur) ||
				   read_dirty_ioctl(file, fd, dirty, m.nblocks, m.block_size)) {
				goto out;
			}
			toread = 0;
			for (uint64_t i = 0; i < m.nblocks; i++) {
				/* A block the base did not have in full must be read. */
				if (i >= base.nblocks || (i + 1) * m.block_size > base.size ||
				    (i + 1) * m.block_size > m.size)
					dirty[i] = 1;
				else if (!dirty[i])
					m.e[i] = base.e[i];
				toread += dirty[i];
			}
		}
		j.base = &base;
	}
	if (o->selector)
		snprintf(sel, sizeof(sel), "%s", o->selector);
	else
		default_selector(&s, sel, sizeof(sel));
	if (vmrs_salt(&s, sel, salt, &m.salt_index)) {
		vmrs_err("deriving the salt: HMAC-SHA256 failed (OpenSSL)");
		goto out;
	}
	if (idset_init(&j.ids, toread, m.e))
		goto out;
	/*
	 * Room for every block read to be new: only the pages used are
	 * touched, and no realloc copies the list as it grows (2% of a save).
	 */
	j.nb = malloc((toread ? toread : 1) * sizeof(*j.nb));
	if (j.nb)
		j.nbcap = toread ? toread : 1;
	j.s = &s;
	j.m = &m;
	j.fd = fd;
	j.salt = salt;
	j.dirty = dirty;
	/*
	 * A plain file is hashed and sealed where it lies in the page cache
	 * instead of being copied out first. Not a vmresetfs file (the
	 * module reverts pages under its mappings) nor a device, nor for
	 * RADOS, whose reads are not what a save waits on.
	 */
	if (!s.rados && !is_vmr && S_ISREG(st.st_mode) && m.size && m.size <= SIZE_MAX &&
	    use_maps()) {
		void *p = mmap(NULL, (size_t)m.size, PROT_READ, MAP_SHARED, fd, 0);

		if (p != MAP_FAILED)
			j.in_map = p;
	}
	if (getenv("VMRESET_STORE_STOP_AT"))
		j.stop_mid = toread / 2 ? toread / 2 : 1;
	stop_at("before-blocks");
	if (run_job(&j, o->threads)) {
		if (s.rados)
			vmrs_err("'%s': nothing saved", file);
		goto out;
	}
	/*
	 * A snapshot or revert while the blocks were read leaves a mix of
	 * two states, and the dirty list may have missed pages: refuse.
	 */
	if (is_vmr && (!file_ident(fd, &st, &now_id, &has_snap) ||
		       now_id.snapshots != cur.snapshots || now_id.reverts != cur.reverts)) {
		vmrs_err("'%s' was snapshotted or reverted during the save: nothing saved", file);
		goto out;
	}
	for (int k = 0; k < j.npacks; k++) {
		r = vmrs_pack_finish(&j.packs[k]);
		if (r) {
			vmrs_err("'%s': writing a pack: %s; nothing saved", store,
				 vmrs_store_strerror(&s, r));
			goto out;
		}
	}
	r = vmrs_sync_packs(&s);
	if (r) {
		vmrs_err("'%s': syncing packs: %s", store, strerror(-r));
		goto out;
	}
	stop_at("after-blocks");
	/* In key order, consecutive puts land on the B-tree pages just touched. */
	vmrs_sort_by_id(j.nb, j.nnb, sizeof(*j.nb));
	if (j.nnb && vmrs_index_commit(&s, j.nb, j.nnb))
		goto out;
	stop_at("before-manifest");
	r = vmrs_manifest_write(&s, key, &m, o->base ? &base : NULL);
	if (r == -ENOLCK) {
		vmrs_err("writing manifest '%s': %s; nothing saved", name, vmrs_rados_lost_msg(-EBUSY));
		goto out;
	}
	if (r == -EBUSY || r == -ESTALE) {
		vmrs_err("writing manifest '%s': %s", name, r == -EBUSY ?
			 "another save based a snapshot on it meanwhile" :
			 "its base was replaced during the save");
		goto out;
	}
	if (r) {
		vmrs_err("writing manifest '%s': %s; nothing saved", name,
			 vmrs_store_strerror(&s, r));
		goto out;
	}
	printf("saved '%s' (seq %" PRIu64 "%s%s%s): %" PRIu64 " bytes, %" PRIu64
	       " blocks of %u: %" PRIu64 " zero, %" PRIu64 " new, %" PRIu64
	       " deduplicated, %" PRIu64 " unchanged; %" PRIu64 " bytes stored; salt %u of %u; %.3f s\n",
	       name, m.h.seq, m.h.base[0] ? ", on '" : "", m.h.base, m.h.base[0] ? "'" : "",
	       m.size, m.nblocks, m.block_size, (uint64_t)j.zero, (uint64_t)j.written,
	       (uint64_t)j.dedup,
	       m.nblocks - j.zero - j.written - j.dedup, (uint64_t)j.stored,
	       m.salt_index, s.copies, now() - t0);
	ret = 0;
out:
	if (j.in_map)
		munmap((void *)j.in_map, (size_t)m.size);
	if (fd >= 0)
		close(fd);
	job_free(&j);
	free(dirty);
	vmrs_manifest_free(&m);
	vmrs_manifest_free(&base);
	vmrs_store_close(&s);
	return ret;
}

/* Re-applies the snapshot's preserved ranges to a vmresetfs target. */
static int apply_preserved(const char *file, int fd, const struct vmrs_manifest *m)
{
	for (uint32_t k = 0; k < m->nranges; k++) {
		struct vmreset_preserve p = {
			.op = VMRESET_PRESERVE_ADD,
			.offset = m->ranges[k].offset,
			.length = m->ranges[k].length,
		};

		if (ioctl(fd, VMRESET_IOC_PRESERVE, &p)) {
			vmrs_err("'%s': preserving [%" PRIu64 ", +%" PRIu64 "): %s", file,
				 (uint64_t)p.offset, (uint64_t)p.length, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The VM state or the profile a snapshot carries, written as @path atomically. */
static int write_out(const char *what, const char *path, const uint8_t *buf, uint32_t len)
{
	char dir[PATH_MAX], *slash;
	const char *name;
	int ret;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		name = slash + 1;
		if (!dir[0])
			snprintf(dir, sizeof(dir), "/");
	} else {
		snprintf(dir, sizeof(dir), ".");
		name = path;
	}
	ret = vmrs_write_file_atomic(dir, name, buf, len);
	if (!ret)
		ret = vmrs_fsync_dir(dir);
	if (ret)
		vmrs_err("%s '%s': %s", what, path, strerror(-ret));
	return ret;
}

static void parent_dir(const char *file, char *dir, size_t len)
{
	char *slash;

	snprintf(dir, len, "%s", file);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
}

int cmd_load(const char *store, const char *name, const char *file,
	     const struct vmrs_opts *o)
{
	struct vmrs_manifest m = { 0 };
	struct vmreset_features f = { .size = sizeof(f) };
	struct vmrs_store s = { .lock_fd = -1 };
	struct job j = { .op = OP_LOAD, .what = name, .partial = o->partial };
	char tmp[PATH_MAX] = "", dir[PATH_MAX];
	uint8_t key[VMRS_KEY_LEN];
	bool in_place = false, is_vmr = false, existed;
	struct stat st = { 0 }, st2;
	int fd = -1, ret = 1, r;
	double t0 = now();

	if (!vmrs_name_ok(name)) {
		vmrs_err("bad snapshot name '%s'", name);
		return 2;
	}
	vmrs_cache_ids = true;	/* RADOS: every block is authenticated before use */
	if (vmrs_store_open(&s, store, false) || vmrs_key_load(o->key_file, key) ||
	    vmrs_manifest_read(&s, name, key, &m))
		goto out;
	if (o->min_seq && m.h.seq < o->min_seq) {
		vmrs_err("manifest '%s': seq %" PRIu64 " is older than --min-seq %" PRIu64
			 " (rolled back?)", name, m.h.seq, o->min_seq);
		goto out;
	}
	/* Before the target is touched: what was asked for must be there. */
	if (o->state_out && !m.has_state) {
		vmrs_err("snapshot '%s' has no VM state (saved without --state)", name);
		goto out;
	}
	if (o->profile_out && !m.profile) {
		vmrs_err("snapshot '%s' has no working-set profile (saved without --profile)",
			 name);
		goto out;
	}
	j.s = &s;
	j.m = &m;
	/*
	 * Before the open: a FIFO would block it until a reader came, and
	 * nothing but a file or a block device can take a pwrite.
	 */
	if (!stat(file, &st) && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		vmrs_err("'%s': not a regular file or a block device", file);
		goto out;
	}
	fd = open(file, O_WRONLY | O_CLOEXEC);
	existed = fd >= 0 && !fstat(fd, &st);
	/*
	 * A vmresetfs file or a device keeps its identity (snapshots, mappings),
	 * so it is written in place, after a pass that checks every block;
	 * anything else gets a temporary file renamed over it.
	 */
	if (existed && S_ISREG(st.st_mode) && !ioctl(fd, VMRESET_IOC_FEATURES, &f))
		is_vmr = true;
	if (existed && (!S_ISREG(st.st_mode) || is_vmr))
		in_place = true;
	if (o->partial && fd < 0)
		fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (in_place || o->partial) {
		uint64_t dev;

		if (fd < 0) {
			vmrs_err("'%s': %s", file, strerror(errno));
			goto out;
		}
		/* A device too small would take the first part and fail at its end. */
		if (S_ISBLK(st.st_mode)) {
			if (device_size(file, fd, &dev))
				goto out;
			if (dev < m.size) {
				vmrs_err("'%s': the device holds %" PRIu64 " bytes, snapshot '%s' %"
					 PRIu64 "; nothing written", file, dev, name, m.size);
				goto out;
			}
		}
		if (!o->partial) {
			j.op = OP_VERIFY;
			if (run_job(&j, o->threads)) {
				vmrs_err("'%s' left untouched", file);
				goto out;
			}
			j.op = OP_LOAD;
			atomic_store(&j.next, 0);
			atomic_store(&j.bytes, 0);
			pthread_mutex_destroy(&j.lock);
			pthread_mutex_destroy(&j.write_lock);
		}
		j.write_zeros = true;
	} else {
		if (fd >= 0)
			close(fd);
		snprintf(tmp, sizeof(tmp), "%s.vmrs-XXXXXX", file);
		fd = mkstemp(tmp);
		if (fd < 0) {
			vmrs_err("'%s': %s", tmp, strerror(errno));
			tmp[0] = 0;
			goto out;
		}
		/* The target keeps its mode (mkstemp made the file 0600). */
		if (fchmod(fd, existed ? st.st_mode & 07777 : 0644)) {
			vmrs_err("'%s': chmod: %s", tmp, strerror(errno));
			goto out;
		}
		if (existed && getuid() == 0 && fchown(fd, st.st_uid, st.st_gid)) {
			vmrs_err("'%s': chown: %s", tmp, strerror(errno));
			goto out;
		}
	}
	if (!in_place || S_ISREG(st.st_mode)) {
		if (ftruncate(fd, (off_t)m.size)) {
			vmrs_err("'%s': truncate: %s", file, strerror(errno));
			goto out;
		}
	}
	j.fd = fd;
	/* st_blksize: a power of two, taken up to 16 MiB (a chunk's buffers). */
	if (!fstat(fd, &st2) && st2.st_blksize > 0 && st2.st_blksize <= (16 << 20) &&
	    !(st2.st_blksize & (st2.st_blksize - 1)))
		j.out_unit = (uint32_t)st2.st_blksize;
	if (run_job(&j, o->threads)) {
		if (o->partial)
			vmrs_err("'%s': partial load, %d bad blocks", file, (int)j.errors);
		goto out;
	}
	if (fsync(fd)) {
		vmrs_err("'%s': fsync: %s", file, strerror(errno));
		goto out;
	}
	if (tmp[0]) {
		if (rename(tmp, file)) {
			vmrs_err("'%s': rename: %s", file, strerror(errno));
			goto out;
		}
		tmp[0] = 0;
		/* The rename is only durable once the directory is synced. */
		parent_dir(file, dir, sizeof(dir));
		r = vmrs_fsync_dir(dir);
		if (r) {
			vmrs_err("'%s': fsync: %s", dir, strerror(-r));
			goto out;
		}
	}
	if (is_vmr && apply_preserved(file, fd, &m))
		goto out;
	if (o->state_out && write_out("state file", o->state_out, m.blob, m.blob_len))
		goto out;
	if (o->profile_out && write_out("profile", o->profile_out, m.profile, m.profile_len))
		goto out;
	{
		uint64_t hits = 0, misses = 0;
		char cache[96] = "";

		/* Misses: blocks not in the host cache, fetched from RADOS. */
		if (vmrs_rados_cache_stats(&s, &hits, &misses))
			snprintf(cache, sizeof(cache), "; host cache: %" PRIu64 " hits, %" PRIu64
				 " fetched", hits, misses);
		printf("loaded '%s' (seq %" PRIu64 ") into '%s': %" PRIu64 " bytes, %" PRIu64
		       " blocks%s%s; %.3f s\n", name, m.h.seq, file, m.size, m.nblocks,
		       is_vmr && m.nranges ? ", preserved ranges re-applied" : "", cache,
		       now() - t0);
	}
	ret = 0;
out:
	if (tmp[0])
		unlink(tmp);
	if (fd >= 0)
		close(fd);
	vmrs_manifest_free(&m);
	vmrs_store_close(&s);
	return ret;
}

/* Without a key: every block a manifest adds is indexed and readable. */
static int verify_refs(struct vmrs_store *s, const char *name)
{
	uint8_t (*ids)[VMRS_HASH_LEN], *buf = malloc(VMRS_MAX_BLOCK + VMRS_TAG_LEN);
	char hex[2 * VMRS_HASH_LEN + 1];
	void *rtxn = vmrs_index_reader(s);
	struct vmrs_mhdr h;
	struct vmrs_loc loc;
	int bad = 0, r;

	if (!buf || vmrs_manifest_header(s, name, &h, &ids, NULL)) {
		free(buf);
		vmrs_index_reader_end(s, rtxn);
		return 1;
	}
	for (uint64_t i = 0; i < h.nrefs; i++) {
		vmrs_hex(ids[i], VMRS_HASH_LEN, hex);
		if (vmrs_index_get(s, rtxn, ids[i], &loc)) {
			vmrs_err("%s: block %s: missing from the store", name, hex);
			bad++;
		} else if (loc.len <= VMRS_TAG_LEN || loc.len > VMRS_MAX_BLOCK + VMRS_TAG_LEN) {
			/* Checked before the read: buf holds one block. */
			vmrs_err("%s: block %s: damaged index entry (length %u)", name, hex, loc.len);
			bad++;
		} else if ((r = vmrs_block_get(s, rtxn, &loc, buf, false)) == -ENOENT) {
			vmrs_err("%s: block %s: missing from the store", name, hex);
			bad++;
		} else if (r) {
			vmrs_err("%s: block %s: truncated (%s)", name, hex, strerror(-r));
			bad++;
		}
	}
	if (h.base[0]) {
		struct vmrs_mhdr bh;

		if (vmrs_manifest_header(s, h.base, &bh, NULL, NULL)) {
			vmrs_err("%s: its base '%s' is unusable", name, h.base);
			bad++;
		}
	}
	free(ids);
	free(buf);
	vmrs_index_reader_end(s, rtxn);
	if (!bad)
		printf("verified '%s': %" PRIu64 " blocks present (no key: contents not decrypted)\n",
		       name, h.nrefs);
	return bad ? 1 : 0;
}

static int verify_one(struct vmrs_store *s, const char *name, const uint8_t *key,
		      const struct vmrs_opts *o)
{
	struct vmrs_manifest m;
	struct job j = { .op = OP_VERIFY, .what = name, .s = s, .m = &m };
	int ret;

	if (!key)
		return verify_refs(s, name);
	if (vmrs_manifest_read(s, name, key, &m))
		return 1;
	ret = run_job(&j, o->threads) ? 1 : 0;
	if (!ret)
		printf("verified '%s': %" PRIu64 " bytes, %" PRIu64 " blocks decrypted and authenticated\n",
		       name, m.size, m.nblocks);
	vmrs_manifest_free(&m);
	return ret;
}

int cmd_verify(const char *store, const char *name, const struct vmrs_opts *o)
{
	uint8_t key[VMRS_KEY_LEN];
	struct vmrs_store s = { .lock_fd = -1 };
	char **names;
	int ret = 0, n;

	vmrs_cache_size = 0;	/* RADOS: verify the store, not this host's cache */
	if (vmrs_store_open(&s, store, false) ||
	    (o->key_file && vmrs_key_load(o->key_file, key))) {
		vmrs_store_close(&s);
		return 1;
	}
	if (name && !vmrs_name_ok(name)) {
		vmrs_err("bad snapshot name '%s'", name);
		vmrs_store_close(&s);
		return 2;
	}
	if (name) {
		ret = verify_one(&s, name, o->key_file ? key : NULL, o);
		vmrs_store_close(&s);
		return ret;
	}
	n = vmrs_manifest_names(&s, &names);
	if (n < 0)
		ret = 1;
	for (int i = 0; i < n; i++)
		ret |= verify_one(&s, names[i], o->key_file ? key : NULL, o);
	if (n >= 0)
		vmrs_names_free(names, n);
	if (!ret)
		printf("store '%s': %d snapshots verified\n", store, n);
	vmrs_store_close(&s);
	return ret;
}
