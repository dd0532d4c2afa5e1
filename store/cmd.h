/* SPDX-License-Identifier: GPL-2.0 */
#ifndef VMRS_CMD_H
#define VMRS_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmrs_store;

struct vmrs_opts {
	const char *key_file;
	const char *name;
	const char *base;
	const char *dirty_file;
	const char *selector;
	const char *state_file;		/* save --state */
	const char *state_out;		/* load --state-out (or --state) */
	const char *profile_file;	/* save --profile */
	const char *profile_out;	/* load --profile-out */
	uint64_t min_seq;
	bool partial;
	bool json;
	bool force;			/* delete --force */
	int threads;
};

int cmd_save(const char *file, const char *store, const struct vmrs_opts *o);
int cmd_load(const char *store, const char *name, const char *file,
	     const struct vmrs_opts *o);
int cmd_verify(const char *store, const char *name, const struct vmrs_opts *o);
int cmd_gc(const char *store, const struct vmrs_opts *o);
int cmd_list(const char *store, const struct vmrs_opts *o);
int cmd_delete(const char *store, const char *name, const struct vmrs_opts *o);
int cmd_reshard(const char *store, unsigned int nshards, const struct vmrs_opts *o);

#endif
