// SPDX-License-Identifier: GPL-2.0
/*
 * indexbench.c - a directory store's LMDB index at scale, with the
 * environment flags and entry layout of index.c: N random 32-byte IDs
 * (24-byte values) added in commits of a save's size, sorted per commit
 * as a save does; then the file size, the B-tree depth, and random
 * lookups per second (hits and misses, as a save's dedup check makes).
 *
 *   store/indexbench DIR [MILLIONS [PER_COMMIT]]   (make -C store indexbench)
 */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/rand.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

int main(int argc, char **argv)
{
	size_t n = (argc > 2 ? strtoul(argv[2], NULL, 0) : 10) * 1000000UL;
	size_t per = argc > 3 ? strtoul(argv[3], NULL, 0) : 1000000UL, probes = 1000000;
	uint8_t (*ids)[32] = malloc(per * 32), (*probe)[32] = malloc(probes * 32);
	uint8_t val[24] = { 0 };
	char path[4096];
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *t;
	MDB_stat st;
	struct stat sb;
	double t0, tput = 0, tget;
	size_t hits = 0;

	if (argc < 2 || !ids || !probe || !per) {
		fprintf(stderr, "usage: indexbench DIR [MILLIONS [PER_COMMIT]]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/index", argv[1]);
	if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 1ULL << 40) ||
	    mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOTLS, 0644) ||
	    mdb_txn_begin(env, NULL, 0, &t) || mdb_dbi_open(t, NULL, 0, &dbi) || mdb_txn_commit(t))
		return 1;
	for (size_t done = 0; done < n; done += per) {
		size_t m = n - done < per ? n - done : per;

		if (RAND_bytes((uint8_t *)ids, (int)(m * 32)) != 1)
			return 1;
		/* Every 8th ID of the last commit is probed later (a hit). */
		for (size_t i = 0; i < m && done + per >= n && hits < probes / 2; i += 8)
			memcpy(probe[hits++], ids[i], 32);
		qsort(ids, m, 32, cmp);
		t0 = now();
		if (mdb_txn_begin(env, NULL, 0, &t))
			return 1;
		for (size_t i = 0; i < m; i++) {
			MDB_val k = { 32, ids[i] }, v = { sizeof(val), val };

			int rc = mdb_put(t, dbi, &k, &v, MDB_NOOVERWRITE);

			if (rc && rc != MDB_KEYEXIST)
				return 1;
		}
		if (mdb_txn_commit(t))
			return 1;
		tput += now() - t0;
	}
	if (RAND_bytes((uint8_t *)probe[hits], (int)((probes - hits) * 32)) != 1)
		return 1;
	t0 = now();
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &t))
		return 1;
	for (size_t i = 0, found = 0; i < probes; i++) {
		MDB_val k = { 32, probe[i] }, v;

		found += !mdb_get(t, dbi, &k, &v);
		if (i == probes - 1 && found != hits)
			fprintf(stderr, "found %zu of %zu\n", found, hits);
	}
	mdb_stat(t, dbi, &st);
	mdb_txn_abort(t);
	tget = now() - t0;
	stat(path, &sb);
	printf("%zu entries: file %.2f GB (%.1f bytes/entry), depth %u, %zu leaf pages; "
	       "puts %.0f/s (commits of %zu, sorted), lookups %.0f/s (half hits)\n",
	       (size_t)st.ms_entries, sb.st_size / 1e9, (double)sb.st_size / st.ms_entries,
	       st.ms_depth, (size_t)st.ms_leaf_pages, n / tput, per, probes / tget);
	mdb_env_close(env);
	return 0;
}
