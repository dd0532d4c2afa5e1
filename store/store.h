/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_STORE_H
#define VMRS_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"

#define VMRS_DEFAULT_BLOCK	(16 * 1024)
#define VMRS_MIN_BLOCK		4096
#define VMRS_MAX_BLOCK		(512 * 1024)
#define VMRS_MAX_COPIES		64

enum vmrs_salt_mode { SALT_USER, SALT_TIME, SALT_LOCATION, SALT_MIX };

struct vmrs_store {
	char *root;
	int lock_fd;
	uint32_t block_size;
	uint32_t copies;
	enum vmrs_salt_mode salt_mode;
	uint8_t secret[VMRS_HASH_LEN];
};

/* A manifest entry; an all-zero @id marks an all-zero block (not stored). */
struct vmrs_entry {
	uint8_t id[VMRS_HASH_LEN];
	uint8_t key[VMRS_KEY_LEN];
};

struct vmrs_range {
	uint64_t offset;
	uint64_t length;
};

struct vmrs_manifest {
	uint64_t size;
	uint32_t block_size;
	uint64_t nblocks;
	struct vmrs_entry *e;
	uint32_t nranges;
	struct vmrs_range *ranges;
	uint32_t blob_len;
	uint8_t *blob;
};

extern const char *vmrs_salt_names[];

int vmrs_store_init(const char *root, uint32_t block_size, uint32_t copies,
		    enum vmrs_salt_mode mode);
int vmrs_store_open(struct vmrs_store *s, const char *root, bool exclusive);
void vmrs_store_close(struct vmrs_store *s);

int vmrs_salt(const struct vmrs_store *s, const char *selector,
	      uint8_t salt[VMRS_HASH_LEN], uint32_t *index);

bool vmrs_entry_is_zero(const struct vmrs_entry *e);
void vmrs_block_path(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		     char *path, size_t len);
/* Stores a sealed block unless present; returns 1 if written, 0 if deduped. */
int vmrs_block_put(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		   const uint8_t *data, size_t len);
/* Reads a sealed block of @len bytes: 0, -ENOENT (missing) or -EBADMSG (size). */
int vmrs_block_get(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		   uint8_t *data, size_t len);
int vmrs_sync_blocks(const struct vmrs_store *s);

int vmrs_key_create(const char *path);
int vmrs_key_load(const char *path, uint8_t key[VMRS_KEY_LEN]);

bool vmrs_name_ok(const char *name);
int vmrs_manifest_write(const struct vmrs_store *s, const char *name,
			const uint8_t key[VMRS_KEY_LEN], const struct vmrs_manifest *m);
int vmrs_manifest_read(const struct vmrs_store *s, const char *name,
		       const uint8_t key[VMRS_KEY_LEN], struct vmrs_manifest *m);
/* The clear-text block references of a manifest (what gc needs, no key). */
int vmrs_manifest_refs(const struct vmrs_store *s, const char *name,
		       uint8_t (**ids)[VMRS_HASH_LEN], uint64_t *n);
void vmrs_manifest_free(struct vmrs_manifest *m);

int vmrs_write_file_atomic(const char *dir, const char *name, const void *buf,
			   size_t len);
void vmrs_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
