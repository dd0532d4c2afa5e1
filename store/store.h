/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_STORE_H
#define VMRS_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"

#define VMRS_DEFAULT_BLOCK	(4 * 1024)
#define VMRS_MIN_BLOCK		4096
#define VMRS_MAX_BLOCK		(512 * 1024)
#define VMRS_MAX_COPIES		64
#define VMRS_MAX_CHAIN		8	/* incremental manifests before a full one */
#define VMRS_MAX_NAME		200
#define VMRS_PACK_MAX		(256ULL << 20)

enum vmrs_salt_mode { SALT_USER, SALT_TIME, SALT_LOCATION, SALT_MIX };

struct vmrs_index;
struct vmrs_rados;
struct vmrs_cache;

/* RADOS stores: packs are objects of at most this size (written whole). */
#define VMRS_RADOS_PACK		(4ULL << 20)

struct vmrs_store {
	char *root;
	int lock_fd;
	uint32_t block_size;
	uint32_t copies;
	enum vmrs_salt_mode salt_mode;
	uint8_t secret[VMRS_HASH_LEN];
	struct vmrs_index *idx;
	struct vmrs_rados *rados;	/* a rados:// store; NULL = a directory */
};

/* Block cache of a RADOS store (--cache, --cache-size; 0 = none). */
extern const char *vmrs_cache_dir;
extern uint64_t vmrs_cache_size;
/* load: a cached block's index entry is taken from the cache (the block is
 * authenticated anyway); never for save (dedup needs the real index). */
extern bool vmrs_cache_ids;

/* A manifest entry; an all-zero @id marks an all-zero block (not stored). */
struct vmrs_entry {
	uint8_t id[VMRS_HASH_LEN];
	uint8_t key[VMRS_KEY_LEN];
};

struct vmrs_range {
	uint64_t offset;
	uint64_t length;
};

/* Where a vmresetfs file was, and how often it was snapshotted/reverted. */
struct vmrs_ident {
	uint8_t boot_id[16];
	uint64_t dev, ino, obj_id, snapshots, reverts;
	uint64_t hot_demotions;	/* valid if has_hot (manifests since the hot-page fix) */
	bool has_hot;
};

/* The clear, authenticated part of a manifest (no key needed to read it). */
struct vmrs_mhdr {
	char name[VMRS_MAX_NAME + 1];
	char base[VMRS_MAX_NAME + 1];	/* "" = a full manifest */
	uint64_t seq;			/* 1 + the seq of the manifest it replaced */
	uint64_t time;			/* save time, Unix seconds */
	uint64_t size;			/* logical bytes */
	uint64_t base_seq;
	uint8_t base_digest[VMRS_HASH_LEN];	/* SHA-256 of the base's file */
	uint32_t depth;			/* incremental manifests down to a full one */
	uint64_t nrefs;			/* block IDs this manifest adds */
	uint8_t digest[VMRS_HASH_LEN];	/* of this manifest's file, as read */
};

struct vmrs_manifest {
	struct vmrs_mhdr h;
	uint64_t size;
	uint32_t block_size;
	uint64_t nblocks;
	struct vmrs_entry *e;		/* nblocks entries, bases resolved */
	bool has_ident;
	struct vmrs_ident ident;
	uint32_t nranges;
	struct vmrs_range *ranges;
	bool has_state;			/* saved with --state (blob, maybe empty) */
	uint32_t blob_len;
	uint8_t *blob;
	uint32_t profile_len;		/* a working-set profile (docs/bpf.md) */
	uint8_t *profile;		/* NULL = none */
	uint32_t salt_index;
};

/* Where a sealed block lives. */
struct vmrs_loc {
	uint64_t pack;
	uint64_t off;
	uint32_t len;
};

extern const char *vmrs_salt_names[];

/* @shards: RADOS index shards (0 = the default, 32). */
int vmrs_store_init(const char *root, uint32_t block_size, uint32_t copies,
		    enum vmrs_salt_mode mode, uint32_t shards);
int vmrs_store_open(struct vmrs_store *s, const char *root, bool exclusive);
void vmrs_store_close(struct vmrs_store *s);

int vmrs_salt(const struct vmrs_store *s, const char *selector,
	      uint8_t salt[VMRS_HASH_LEN], uint32_t *index);

bool vmrs_entry_is_zero(const struct vmrs_entry *e);

/* index.c: the LMDB block index and the pack files. */
int vmrs_index_open(struct vmrs_store *s);
void vmrs_index_close(struct vmrs_store *s);
/* A read transaction per thread; vmrs_index_get returns 0 or -ENOENT. */
void *vmrs_index_reader(struct vmrs_store *s);
void vmrs_index_reader_end(struct vmrs_store *s, void *rtxn);
int vmrs_index_get(struct vmrs_store *s, void *rtxn, const uint8_t id[VMRS_HASH_LEN],
		   struct vmrs_loc *loc);
/* Directory store: many lookups, @order sorted by ID (see index.c). */
int vmrs_index_locate(struct vmrs_store *s, void *rtxn, const struct vmrs_entry *e,
		      const uint32_t *order, uint64_t n, struct vmrs_loc *loc);
struct vmrs_newblock {
	uint8_t id[VMRS_HASH_LEN];
	struct vmrs_loc loc;
	bool replace;		/* the indexed copy was damaged */
};
int vmrs_index_commit(struct vmrs_store *s, const struct vmrs_newblock *nb, uint64_t n);
uint64_t vmrs_index_count(struct vmrs_store *s);
uint64_t vmrs_index_bytes_used(struct vmrs_store *s);

/* Appends sealed blocks to a pack file of its own; one per thread. */
struct vmrs_pack_writer {
	struct vmrs_store *s;
	int fd;
	uint64_t id, off;	/* off: the pack's length, buffered bytes included */
	uint8_t *buf;
	size_t blen;
	int err;		/* sticky: a failed write lost buffered blocks */
	char tmp[4096];
};
/* Room for @len sealed bytes in the pack, at @loc (written when full/finished). */
uint8_t *vmrs_pack_reserve(struct vmrs_pack_writer *w, uint32_t len, struct vmrs_loc *loc,
			   int *err);
int vmrs_pack_append(struct vmrs_pack_writer *w, const uint8_t *data, uint32_t len,
		     struct vmrs_loc *loc);
/* Writes, fsyncs the pack and renames it into place (no directory fsync). */
int vmrs_pack_finish(struct vmrs_pack_writer *w);
void vmrs_pack_abort(struct vmrs_pack_writer *w);
int vmrs_sync_packs(const struct vmrs_store *s);
void vmrs_pack_path(const struct vmrs_store *s, uint64_t pack, char *path, size_t len);
/* Reads a block; a cache of open pack files is shared by threads. */
int vmrs_block_read(struct vmrs_store *s, const struct vmrs_loc *loc, uint8_t *buf);
/* Directory store: @len bytes of a pack at @off (0, -ENOENT or -ENODATA). */
int vmrs_pack_read(struct vmrs_store *s, uint64_t pack, uint64_t off, size_t len, uint8_t *buf);
void vmrs_pack_cache_drop(struct vmrs_store *s);
/* Directory store: the whole pack, mapped read-only and cached, or NULL. */
const uint8_t *vmrs_pack_map(struct vmrs_store *s, uint64_t pack, size_t *size);

int vmrs_key_create(const char *path);
int vmrs_key_load(const char *path, uint8_t key[VMRS_KEY_LEN]);

bool vmrs_name_ok(const char *name);
int vmrs_manifest_write(const struct vmrs_store *s, const uint8_t key[VMRS_KEY_LEN],
			struct vmrs_manifest *m, const struct vmrs_manifest *base);
/* Reads @name and its bases; fails if any is not what it claims to be. */
int vmrs_manifest_read(const struct vmrs_store *s, const char *name,
		       const uint8_t key[VMRS_KEY_LEN], struct vmrs_manifest *m);
/* The clear part of a manifest, and optionally its block references. */
int vmrs_manifest_header(const struct vmrs_store *s, const char *name,
			 struct vmrs_mhdr *h, uint8_t (**ids)[VMRS_HASH_LEN],
			 uint64_t *file_size);
void vmrs_manifest_free(struct vmrs_manifest *m);
/* Serialises replacing and deleting manifests against saves on them. */
int vmrs_manifest_lock(const struct vmrs_store *s);
void vmrs_manifest_unlock(const struct vmrs_store *s, int fd);
/* Removes a manifest (under vmrs_manifest_lock). */
int vmrs_manifest_remove(const struct vmrs_store *s, const char *name);
/* Whether a manifest of that name is there, readable or not. */
bool vmrs_manifest_exists(const struct vmrs_store *s, const char *name);
int vmrs_dependents(const struct vmrs_store *s, const char *name, char *first, size_t len);

struct vmrs_gc_stats {
	uint64_t blocks_removed, blocks_kept, packs_removed, packs_rewritten;
	uint64_t bytes_freed, tmps;
};
/* live.c: gc's set of live block IDs, memory bounded (spills to a file). */
/*
 * Sorts @n elements of @size bytes (at most VMRS_SORT_MAX) that each start
 * with a block ID by that ID, in place (live.c).
 */
#define VMRS_SORT_MAX	128
void vmrs_sort_by_id(void *base, uint64_t n, size_t size);

struct vmrs_live;
uint64_t vmrs_live_bound(void);
struct vmrs_live *vmrs_live_new(const char *tmpdir, uint64_t bound);
int vmrs_live_add(struct vmrs_live *l, const uint8_t (*ids)[VMRS_HASH_LEN], uint64_t n);
/* After the last add; then only lookups. */
int vmrs_live_seal(struct vmrs_live *l);
/* 1 live, 0 not, -1 failed (reported: gc must then remove nothing). */
int vmrs_live_has(struct vmrs_live *l, const uint8_t id[VMRS_HASH_LEN]);
bool vmrs_live_spilled(const struct vmrs_live *l);
/* The spilled table's file size (0 while in memory). */
uint64_t vmrs_live_table_bytes(const struct vmrs_live *l);
void vmrs_live_free(struct vmrs_live *l);

int vmrs_index_gc(struct vmrs_store *s, struct vmrs_live *live, struct vmrs_gc_stats *st);
/* Sum of the stored lengths of @ids (missing ones count 0). */
uint64_t vmrs_index_bytes(struct vmrs_store *s, uint8_t (*ids)[VMRS_HASH_LEN], uint64_t n);
/* Names of the manifests, sorted; returns the count or -1. */
int vmrs_manifest_names(const struct vmrs_store *s, char ***names);
/* Removes manifests' temporaries of killed saves (under the exclusive lock). */
uint64_t vmrs_manifest_tmps_remove(const struct vmrs_store *s);
void vmrs_names_free(char **names, int n);

int vmrs_write_file_atomic(const char *dir, const char *name, const void *buf,
			   size_t len);
int vmrs_fsync_dir(const char *dir);
char *vmrs_read_file(const char *path, size_t *len);
int vmrs_pread_all(int fd, void *buf, size_t len, off_t off);
int vmrs_pwrite_all(int fd, const void *buf, size_t len, off_t off);
void vmrs_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a block through the reader (RADOS: prefetched, cached; @fresh: from RADOS). */
int vmrs_block_get(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *loc, uint8_t *buf,
		   bool fresh);
/* Looks up many IDs at once (RADOS: one round trip; a no-op for LMDB). */
int vmrs_index_prefetch(struct vmrs_store *s, void *rtxn, const uint8_t (*ids)[VMRS_HASH_LEN],
			size_t n);
int vmrs_block_prefetch(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *locs, size_t n);
const char *vmrs_store_strerror(const struct vmrs_store *s, int rc);

/* rados.c */
bool vmrs_is_rados(const char *store);
int vmrs_rados_init(const char *url, const char *policy, size_t len);
int vmrs_rados_open(struct vmrs_store *s, const char *url, bool exclusive, char **policy);
void vmrs_rados_close(struct vmrs_store *s);
void vmrs_rados_set_cache(struct vmrs_store *s, struct vmrs_cache *c);
const char *vmrs_rados_lost_msg(int rc);
bool vmrs_rados_cache_stats(struct vmrs_store *s, uint64_t *hits, uint64_t *misses);
char *vmrs_rados_man_read(struct vmrs_store *s, const char *name, size_t *len);
bool vmrs_rados_man_exists(struct vmrs_store *s, const char *name);
int vmrs_rados_man_commit(struct vmrs_store *s, const char *name, const void *buf, size_t len);
int vmrs_rados_man_delete(struct vmrs_store *s, const char *name);
int vmrs_rados_man_lock(struct vmrs_store *s);
void vmrs_rados_man_unlock(struct vmrs_store *s);
int vmrs_rados_man_names(struct vmrs_store *s, char ***names);
void *vmrs_rados_reader(struct vmrs_store *s);
void vmrs_rados_reader_end(void *rtxn);
int vmrs_rados_prefetch(struct vmrs_store *s, void *rtxn, const uint8_t (*ids)[VMRS_HASH_LEN],
			size_t n);
int vmrs_rados_get(struct vmrs_store *s, void *rtxn, const uint8_t id[VMRS_HASH_LEN],
		   struct vmrs_loc *loc);
int vmrs_rados_commit(struct vmrs_store *s, const struct vmrs_newblock *nb, uint64_t n);
uint64_t vmrs_rados_count(struct vmrs_store *s);
unsigned int vmrs_rados_shards(const struct vmrs_store *s);
int vmrs_rados_pack_put(struct vmrs_store *s, uint64_t pack, const void *buf, size_t len);
int vmrs_rados_block_read(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *loc,
			  uint8_t *buf, bool fresh);
int vmrs_rados_block_prefetch(struct vmrs_store *s, void *rtxn, const struct vmrs_loc *locs,
			      size_t n);
int vmrs_rados_gc(struct vmrs_store *s, struct vmrs_live *live, struct vmrs_gc_stats *st);
struct vmrs_reshard_stats {
	unsigned int old_shards, old_gen, new_shards, new_gen;
	uint64_t moved, skipped, stale_removed, old_removed;
};
/* Moves the index into @nshards shards; the store opened exclusively. */
int vmrs_rados_reshard(struct vmrs_store *s, unsigned int nshards, struct vmrs_reshard_stats *st);

/* cache.c */
struct vmrs_cache *vmrs_cache_open(const char *dir, uint64_t max);
void vmrs_cache_close(struct vmrs_cache *c);
int vmrs_cache_get(struct vmrs_cache *c, const uint8_t k[16], uint8_t *buf, uint32_t len);
bool vmrs_cache_has(struct vmrs_cache *c, const uint8_t k[16]);
void vmrs_cache_put(struct vmrs_cache *c, const uint8_t k[16], const uint8_t *buf, uint32_t len);
void vmrs_cache_drop(struct vmrs_cache *c, const uint8_t k[16]);
int vmrs_cache_id_get(struct vmrs_cache *c, const uint8_t id[VMRS_HASH_LEN],
		      struct vmrs_loc *loc);
void vmrs_cache_id_put(struct vmrs_cache *c, const uint8_t id[VMRS_HASH_LEN],
		       const struct vmrs_loc *loc);
void vmrs_cache_stats(struct vmrs_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *bytes);

#endif
