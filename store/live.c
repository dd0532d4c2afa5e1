// SPDX-License-Identifier: GPL-2.0
/*
 * live.c - gc's set of live block IDs, in bounded memory
 *
 * gc must know every block ID some manifest lists before it removes any
 * index entry. Held as one sorted array that is 32 bytes a block: 3.2 GB
 * for the 100 M-block store of issue 14. Here the IDs gather in an array
 * of at most a bound (VMRESET_STORE_GC_MEM, default 256 MiB); while the
 * set fits, that array, sorted, is the set. Once it does not, every full
 * array is sorted, de-duplicated and added to a temporary LMDB table (a
 * B-tree in a file, unlinked as soon as it is open: a killed gc leaves
 * nothing), and lookups go there. Its pages are file pages the kernel
 * may write back and drop, not anonymous memory; the file takes about
 * 42 bytes an ID.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lmdb.h>

#include "store.h"
#include "util.h"

#define GC_MEM_DEFAULT	(256ULL << 20)
/* IDs per LMDB commit: bounds the transaction's dirty pages (~4 MiB). */
#define SPILL_TXN	(64 * 1024)

struct vmrs_live {
	uint8_t (*ids)[VMRS_HASH_LEN];
	uint64_t n, cap;
	MDB_env *env;		/* NULL while the set fits in ids */
	MDB_dbi dbi;
	MDB_txn *rtxn;		/* lookups, after vmrs_live_seal() */
	char dir[PATH_MAX];
	uint64_t spilled;	/* IDs added to the table (duplicates across runs included) */
};

/*
 * Sorts in place. glibc's qsort() merge-sorts through a copy of the whole
 * array (it did so for gc's 20 M-ID array: peak 1,252 MiB for 640 MiB of
 * IDs), which would double the bound. IDs are hashes, uniform in their
 * bytes: in-place passes by the first byte and then by the second
 * (American flag sort) leave runs of 1/65,536 of the array, sorted by
 * insertion while short and by qsort() (a copy of that run at most)
 * otherwise. With a qsort() per first-byte bucket, as before, sorting a
 * save's 65,536 new blocks and its manifest's IDs was 5% of the save's
 * CPU (msort, memcmp through the comparator and the indirect moves of
 * elements over 32 bytes).
 */
/* Constant sizes for the callers' elements: inline moves, not memcpy calls. */
static inline void move_el(uint8_t *to, const uint8_t *from, size_t size)
{
	if (size == 64)
		memcpy(to, from, 64);
	else if (size == VMRS_HASH_LEN)
		memcpy(to, from, VMRS_HASH_LEN);
	else
		memcpy(to, from, size);
}

static void flag_pass(uint8_t *a, uint64_t n, size_t size, size_t d, uint64_t start[257])
{
	uint64_t count[256] = { 0 }, next[256];
	uint8_t tmp[VMRS_SORT_MAX];

	for (uint64_t i = 0; i < n; i++)
		count[a[i * size + d]]++;
	start[0] = 0;
	for (int b = 0; b < 256; b++) {
		start[b + 1] = start[b] + count[b];
		next[b] = start[b];
	}
	for (int b = 0; b < 256; b++)
		while (next[b] < start[b + 1]) {
			uint8_t c = a[next[b] * size + d];

			if (c == b) {
				next[b]++;
				continue;
			}
			/* Swap it into its bucket's next free slot. */
			move_el(tmp, a + next[c] * size, size);
			move_el(a + next[c] * size, a + next[b] * size, size);
			move_el(a + next[b] * size, tmp, size);
			next[c]++;
		}
}

/* memcmp order of two IDs; the first 8 bytes decide all but 1 in 2^64 times. */
static inline int id_cmp(const uint8_t *x, const uint8_t *y)
{
	uint64_t a, b;

	memcpy(&a, x, 8);
	memcpy(&b, y, 8);
	if (a != b)
		return __builtin_bswap64(a) < __builtin_bswap64(b) ? -1 : 1;
	return memcmp(x + 8, y + 8, VMRS_HASH_LEN - 8);
}

static void insertion_sort(uint8_t *a, uint64_t n, size_t size)
{
	uint8_t tmp[VMRS_SORT_MAX];

	for (uint64_t i = 1; i < n; i++) {
		uint64_t k = i;

		if (id_cmp(a + (i - 1) * size, a + i * size) <= 0)
			continue;
		move_el(tmp, a + i * size, size);
		for (; k && id_cmp(a + (k - 1) * size, tmp) > 0; k--)
			move_el(a + k * size, a + (k - 1) * size, size);
		move_el(a + k * size, tmp, size);
	}
}

#define SORT_SHORT	24

void vmrs_sort_by_id(void *base, uint64_t n, size_t size)
{
	uint64_t s1[257], s2[257];
	uint8_t *a = base;

	if (size > VMRS_SORT_MAX)
		abort();
	flag_pass(a, n, size, 0, s1);
	for (int b = 0; b < 256; b++) {
		uint8_t *p = a + s1[b] * size;
		uint64_t m = s1[b + 1] - s1[b];

		if (m <= SORT_SHORT) {
			insertion_sort(p, m, size);
			continue;
		}
		flag_pass(p, m, size, 1, s2);
		for (int c = 0; c < 256; c++) {
			uint64_t k = s2[c + 1] - s2[c];

			if (k <= SORT_SHORT)
				insertion_sort(p + s2[c] * size, k, size);
			else
				qsort(p + s2[c] * size, k, size, vmr_cmp_id);
		}
	}
}

static uint64_t sort_unique(uint8_t (*ids)[VMRS_HASH_LEN], uint64_t n)
{
	uint64_t j = 0;

	vmrs_sort_by_id(ids, n, VMRS_HASH_LEN);
	for (uint64_t i = 0; i < n; i++)
		if (!j || memcmp(ids[i], ids[j - 1], VMRS_HASH_LEN))
			memmove(ids[j++], ids[i], VMRS_HASH_LEN);
	return j;
}

uint64_t vmrs_live_bound(void)
{
	const char *e = getenv("VMRESET_STORE_GC_MEM");
	uint64_t v;

	if (e && *e && !vmr_parse_size(e, &v) && v >= 64 * VMRS_HASH_LEN)
		return v;
	if (e && *e)
		vmrs_err("VMRESET_STORE_GC_MEM '%s': expected a size of at least 2048 bytes; "
			 "using %llu", e, GC_MEM_DEFAULT);
	return GC_MEM_DEFAULT;
}

struct vmrs_live *vmrs_live_new(const char *tmpdir, uint64_t bound)
{
	struct vmrs_live *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->cap = bound / VMRS_HASH_LEN;
	l->ids = malloc(l->cap * VMRS_HASH_LEN);
	if (!l->ids) {
		free(l);
		return NULL;
	}
	snprintf(l->dir, sizeof(l->dir), "%s", tmpdir);
	return l;
}

static int lmdb_fail(struct vmrs_live *l, const char *what, int rc)
{
	vmrs_err("gc: the live-block table in '%s': %s: %s", l->dir, what, mdb_strerror(rc));
	return -1;
}

static int table_open(struct vmrs_live *l)
{
	char path[PATH_MAX + 64];
	MDB_txn *t;
	int rc;

	snprintf(path, sizeof(path), "%s/.gc-live.%ld", l->dir, (long)getpid());
	rc = mdb_env_create(&l->env);
	if (!rc)
		rc = mdb_env_set_mapsize(l->env, 1ULL << 40);	/* address space only */
	/* Nobody else opens it, and a crash loses nothing worth keeping. */
	if (!rc)
		rc = mdb_env_open(l->env, path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC |
				  MDB_NOMETASYNC | MDB_NOTLS, 0600);
	unlink(path);
	if (rc) {
		if (l->env)
			mdb_env_close(l->env);
		l->env = NULL;
		return lmdb_fail(l, "create", rc);
	}
	rc = mdb_txn_begin(l->env, NULL, 0, &t);
	if (!rc)
		rc = mdb_dbi_open(t, NULL, 0, &l->dbi);
	if (!rc)
		rc = mdb_txn_commit(t);
	else
		mdb_txn_abort(t);
	return rc ? lmdb_fail(l, "open", rc) : 0;
}

/* Sorted, unique ids[0..n) into the table, SPILL_TXN to a commit. */
static int spill(struct vmrs_live *l)
{
	uint64_t n = sort_unique(l->ids, l->n);
	int rc = 0;

	if (!l->env && table_open(l))
		return -1;
	for (uint64_t i = 0; i < n && !rc; ) {
		uint64_t end = n - i < SPILL_TXN ? n : i + SPILL_TXN;
		MDB_txn *t = NULL;

		rc = mdb_txn_begin(l->env, NULL, 0, &t);
		for (; i < end && !rc; i++) {
			MDB_val k = { VMRS_HASH_LEN, l->ids[i] }, v = { 0, NULL };

			rc = mdb_put(t, l->dbi, &k, &v, MDB_NOOVERWRITE);
			if (rc == MDB_KEYEXIST)
				rc = 0;
		}
		if (!rc)
			rc = mdb_txn_commit(t);
		else if (t)
			mdb_txn_abort(t);
	}
	if (rc)
		return lmdb_fail(l, "adding", rc);
	l->spilled += n;
	l->n = 0;
	return 0;
}

int vmrs_live_add(struct vmrs_live *l, const uint8_t (*ids)[VMRS_HASH_LEN], uint64_t n)
{
	while (n) {
		uint64_t take = l->cap - l->n < n ? l->cap - l->n : n;

		memcpy(l->ids[l->n], ids, take * VMRS_HASH_LEN);
		l->n += take;
		ids += take;
		n -= take;
		if (l->n < l->cap)
			break;
		/*
		 * Full: duplicates (blocks shared by snapshots) may free enough
		 * room to go on in memory; if not, move it all to the table.
		 */
		l->n = sort_unique(l->ids, l->n);
		if (l->n > l->cap / 2 && spill(l))
			return -1;
	}
	return 0;
}

int vmrs_live_seal(struct vmrs_live *l)
{
	int rc;

	if (!l->env) {
		l->n = sort_unique(l->ids, l->n);
		return 0;
	}
	if (l->n && spill(l))
		return -1;
	free(l->ids);
	l->ids = NULL;
	rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->rtxn);
	return rc ? lmdb_fail(l, "reading", rc) : 0;
}

int vmrs_live_has(struct vmrs_live *l, const uint8_t id[VMRS_HASH_LEN])
{
	MDB_val k = { VMRS_HASH_LEN, (void *)id }, v;
	int rc;

	if (!l->env)
		return l->n && bsearch(id, l->ids, l->n, VMRS_HASH_LEN, vmr_cmp_id);
	rc = mdb_get(l->rtxn, l->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? lmdb_fail(l, "lookup", rc) : 1;
}

bool vmrs_live_spilled(const struct vmrs_live *l)
{
	return l->env;
}

uint64_t vmrs_live_table_bytes(const struct vmrs_live *l)
{
	MDB_envinfo info;
	MDB_stat st;

	if (!l->env || mdb_env_info(l->env, &info) || mdb_env_stat(l->env, &st))
		return 0;
	return (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

void vmrs_live_free(struct vmrs_live *l)
{
	if (!l)
		return;
	if (l->rtxn)
		mdb_txn_abort(l->rtxn);
	if (l->env)
		mdb_env_close(l->env);
	free(l->ids);
	free(l);
}
