// SPDX-License-Identifier: GPL-2.0
/*
 * maint.c - gc and list: they need no key, only the clear-text block
 * references every manifest carries (IDs of ciphertexts reveal no content)
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "store.h"

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, VMRS_HASH_LEN);
}

/*
 * Runs under the exclusive lock: saves hold it shared from their first
 * block to their manifest's rename, so every block gc sees unreferenced is
 * garbage, and so is every temporary file.
 */
int cmd_gc(const char *store, const struct vmrs_opts *o)
{
	uint8_t (*all)[VMRS_HASH_LEN] = NULL, id[VMRS_HASH_LEN];
	uint64_t nall = 0, removed = 0, kept = 0, bytes = 0, tmps = 0;
	char path[PATH_MAX + 300];
	struct vmrs_store s;
	struct dirent *d;
	struct stat st;
	int ret = 1;
	DIR *dir;

	(void)o;
	if (vmrs_store_open(&s, store, true))
		goto out;
	snprintf(path, sizeof(path), "%s/manifests", store);
	dir = opendir(path);
	if (!dir) {
		vmrs_err("'%s': %s", path, strerror(errno));
		goto out;
	}
	while ((d = readdir(dir))) {
		uint8_t (*ids)[VMRS_HASH_LEN], (*grown)[VMRS_HASH_LEN];
		uint64_t n;

		if (!strncmp(d->d_name, ".tmp.", 5)) {
			snprintf(path, sizeof(path), "%s/manifests/%s", store, d->d_name);
			tmps += !unlink(path);
			continue;
		}
		if (d->d_name[0] == '.')
			continue;
		/* An unreadable manifest must stop gc, or its blocks would go. */
		if (vmrs_manifest_refs(&s, d->d_name, &ids, &n)) {
			closedir(dir);
			goto out;
		}
		grown = realloc(all, (nall + n + 1) * VMRS_HASH_LEN);
		if (!grown) {
			free(ids);
			closedir(dir);
			goto out;
		}
		all = grown;
		memcpy(all[nall], ids, n * VMRS_HASH_LEN);
		nall += n;
		free(ids);
	}
	closedir(dir);
	qsort(all, nall, VMRS_HASH_LEN, cmp_id);
	for (int i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/blocks/%02x", store, i);
		dir = opendir(path);
		if (!dir)
			continue;
		while ((d = readdir(dir))) {
			if (d->d_name[0] == '.' && strncmp(d->d_name, ".tmp.", 5))
				continue;
			snprintf(path, sizeof(path), "%s/blocks/%02x/%s", store, i, d->d_name);
			if (d->d_name[0] == '.') {
				tmps += !unlink(path);
				continue;
			}
			if (!vmrs_unhex(d->d_name, id, sizeof(id)) &&
			    nall && bsearch(id, all, nall, VMRS_HASH_LEN, cmp_id)) {
				kept++;
				continue;
			}
			if (!stat(path, &st) && !unlink(path)) {
				removed++;
				bytes += (uint64_t)st.st_size;
			}
		}
		closedir(dir);
	}
	printf("gc '%s': removed %" PRIu64 " blocks (%" PRIu64 " bytes) and %" PRIu64
	       " temporary files, kept %" PRIu64 " blocks\n", store, removed, bytes, tmps, kept);
	ret = 0;
out:
	free(all);
	vmrs_store_close(&s);
	return ret;
}

int cmd_list(const char *store, const struct vmrs_opts *o)
{
	uint64_t blocks = 0, bytes = 0;
	char path[PATH_MAX + 300];
	struct vmrs_store s;
	struct dirent *d;
	struct stat st;
	int n = 0;
	DIR *dir;

	if (vmrs_store_open(&s, store, false)) {
		vmrs_store_close(&s);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/manifests", store);
	dir = opendir(path);
	if (!dir) {
		vmrs_err("'%s': %s", path, strerror(errno));
		vmrs_store_close(&s);
		return 1;
	}
	if (o->json)
		printf("{\"block_size\": %u, \"copies\": %u, \"salt\": \"%s\", \"snapshots\": [",
		       s.block_size, s.copies, vmrs_salt_names[s.salt_mode]);
	else
		printf("%-32s %10s %14s %s\n", "NAME", "BLOCKS", "MANIFEST", "SAVED");
	while ((d = readdir(dir))) {
		uint8_t (*ids)[VMRS_HASH_LEN];
		char when[32] = "";
		uint64_t nref;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/manifests/%s", store, d->d_name);
		if (stat(path, &st) || vmrs_manifest_refs(&s, d->d_name, &ids, &nref))
			continue;
		free(ids);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&st.st_mtime));
		if (o->json)
			printf("%s{\"name\": \"%s\", \"blocks\": %" PRIu64
			       ", \"manifest_bytes\": %jd, \"saved\": \"%s\"}",
			       n ? ", " : "", d->d_name, nref, (intmax_t)st.st_size, when);
		else
			printf("%-32s %10" PRIu64 " %14jd %s\n", d->d_name, nref,
			       (intmax_t)st.st_size, when);
		n++;
	}
	closedir(dir);
	for (int i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/blocks/%02x", store, i);
		dir = opendir(path);
		while (dir && (d = readdir(dir))) {
			if (d->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/blocks/%02x/%s", store, i, d->d_name);
			if (!stat(path, &st)) {
				blocks++;
				bytes += (uint64_t)st.st_size;
			}
		}
		if (dir)
			closedir(dir);
	}
	if (o->json)
		printf("], \"blocks\": %" PRIu64 ", \"block_bytes\": %" PRIu64 "}\n", blocks, bytes);
	else
		printf("%d snapshots; %" PRIu64 " blocks, %" PRIu64 " bytes stored\n",
		       n, blocks, bytes);
	vmrs_store_close(&s);
	return 0;
}
