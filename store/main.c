// SPDX-License-Identifier: GPL-2.0
/*
 * vmreset-store - convergent-encrypted, deduplicated snapshot store
 *
 * Exit codes: 0 ok, 1 failed, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "store.h"
#include "util.h"

struct subcmd {
	const char *name;
	const char *usage;
	int nargs_min, nargs_max;
};

static const struct subcmd cmds[] = {
	{ "init", "init STORE [--block-size N] [--copies R] [--salt user|time|location|mix] [--index-shards N]", 1, 1 },
	{ "keygen", "keygen KEYFILE", 1, 1 },
	{ "save", "save FILE STORE --key KEYFILE [--name N] [--base NAME [--dirty FILE]] [--selector S] [--state FILE] [--profile FILE] [-t THREADS] [--cache DIR] [--cache-size N]", 2, 2 },
	{ "load", "load STORE NAME FILE --key KEYFILE [--partial] [--min-seq N] [--state-out FILE] [--profile-out FILE] [-t THREADS] [--cache DIR] [--cache-size N]", 3, 3 },
	{ "list", "list STORE [-j]", 1, 1 },
	{ "verify", "verify STORE [NAME] [--key KEYFILE] [-t THREADS] [--cache DIR] [--cache-size N]", 1, 2 },
	{ "delete", "delete STORE NAME [--force]", 2, 2 },
	{ "gc", "gc STORE", 1, 1 },
	{ "reshard", "reshard STORE --index-shards N", 1, 1 },
	{ NULL, NULL, 0, 0 },
};

/*
 * Run with stdin, stdout or stderr closed (cron, daemons), the store's own
 * files would get descriptors 0-2: a message then lands in the LMDB index
 * (destroying it) and a pack on fd 0 looks like "no pack". Fill them first.
 */
static int std_fds(void)
{
	int fd;

	do
		fd = open("/dev/null", O_RDWR);
	while (fd >= 0 && fd <= 2);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmreset-store COMMAND [ARGS]\n\n");
	for (const struct subcmd *c = cmds; c->name; c++)
		fprintf(f, "  vmreset-store %s\n", c->usage);
	fprintf(f, "\nSTORE is a directory, or rados://POOL[/NAMESPACE] for a Ceph RADOS store\n"
		   "(ceph.conf and keyring from $CEPH_CONF or /etc/ceph, $CEPH_ARGS for --id and\n"
		   "others; a host block cache, --cache DIR --cache-size BYTES, default\n"
		   "~/.cache/vmreset-store and 1g, 0 = none).\n"
		   "See vmreset-store(1). Exit codes: 0 ok, 1 failed, 2 usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "block-size", required_argument, NULL, 'b' },
		{ "copies", required_argument, NULL, 'r' },
		{ "salt", required_argument, NULL, 's' },
		{ "index-shards", required_argument, NULL, 'I' },
		{ "key", required_argument, NULL, 'k' },
		{ "name", required_argument, NULL, 'n' },
		{ "base", required_argument, NULL, 'B' },
		{ "dirty", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 'S' },
		{ "partial", no_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 't' },
		{ "state", required_argument, NULL, 'T' },
		{ "state-out", required_argument, NULL, 'O' },
		{ "profile", required_argument, NULL, 'P' },
		{ "profile-out", required_argument, NULL, 'W' },
		{ "min-seq", required_argument, NULL, 'q' },
		{ "cache", required_argument, NULL, 'C' },
		{ "cache-size", required_argument, NULL, 'Z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *csize = getenv("VMRESET_STORE_CACHE_SIZE");
	struct vmrs_opts o = { .threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu };
	uint64_t bs = VMRS_DEFAULT_BLOCK, v;
	uint32_t copies = 1, nt, shards = 0;
	int mode = SALT_MIX, c, nargs;
	const struct subcmd *cmd;
	char **args;

	if (std_fds())
		return 1;
	/* A peer (an OSD) that reset its connection must be an error, not a kill. */
	signal(SIGPIPE, SIG_IGN);
	if (csize && vmr_parse_size(csize, &vmrs_cache_size)) {
		vmrs_err("bad VMRESET_STORE_CACHE_SIZE '%s' (bytes, k/m/g suffixes; 0 = no cache)",
			 csize);
		return 2;
	}
	if (getenv("VMRESET_STORE_CACHE"))
		vmrs_cache_dir = getenv("VMRESET_STORE_CACHE");
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (cmd = cmds; cmd->name && strcmp(cmd->name, argv[1]); cmd++)
		;
	if (!cmd->name) {
		vmrs_err("unknown command '%s'", argv[1]);
		usage(stderr);
		return 2;
	}
	argv++;
	argc--;
	while ((c = getopt_long(argc, argv, "jpht:k:n:", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (vmr_parse_size(optarg, &bs) || bs < VMRS_MIN_BLOCK ||
			    bs > VMRS_MAX_BLOCK || (bs & (bs - 1))) {
				vmrs_err("bad block size '%s' (a power of two, 4k to 512k)", optarg);
				return 2;
			}
			break;
		case 'r':
			if (vmr_parse_u32(optarg, &copies) || !copies || copies > VMRS_MAX_COPIES) {
				vmrs_err("bad copies '%s' (1 to %d)", optarg, VMRS_MAX_COPIES);
				return 2;
			}
			break;
		case 's':
			for (mode = 0; vmrs_salt_names[mode] &&
			     strcmp(vmrs_salt_names[mode], optarg); mode++)
				;
			if (!vmrs_salt_names[mode]) {
				vmrs_err("bad salt mode '%s' (user, time, location or mix)", optarg);
				return 2;
			}
			break;
		case 'I':
			if (vmr_parse_u32(optarg, &shards) || !shards || shards > 4096 ||
			    (shards & (shards - 1))) {
				vmrs_err("bad index shard count '%s' (a power of two, 1 to 4096)", optarg);
				return 2;
			}
			break;
		case 'k': o.key_file = optarg; break;
		case 'n': o.name = optarg; break;
		case 'B': o.base = optarg; break;
		case 'd': o.dirty_file = optarg; break;
		case 'S': o.selector = optarg; break;
		case 'T': o.state_file = optarg; break;
		case 'O': o.state_out = optarg; break;
		case 'P': o.profile_file = optarg; break;
		case 'W': o.profile_out = optarg; break;
		case 'q':
			if (vmr_parse_u64(optarg, &v)) {
				vmrs_err("bad sequence number '%s'", optarg);
				return 2;
			}
			o.min_seq = v;
			break;
		case 'C': vmrs_cache_dir = optarg; break;
		case 'Z':
			if (vmr_parse_size(optarg, &v)) {
				vmrs_err("bad cache size '%s' (bytes, k/m/g suffixes; 0 = no cache)",
					 optarg);
				return 2;
			}
			vmrs_cache_size = v;
			break;
		case 'p': o.partial = true; break;
		case 'j': o.json = true; break;
		case 'f': o.force = true; break;
		case 't':
			if (vmr_parse_u32(optarg, &nt) || !nt || nt > 64) {
				vmrs_err("bad thread count '%s' (1 to 64)", optarg);
				return 2;
			}
			o.threads = (int)nt;
			break;
		case 'h':
			printf("usage: vmreset-store %s\n", cmd->usage);
			return 0;
		default:
			fprintf(stderr, "usage: vmreset-store %s\n", cmd->usage);
			return 2;
		}
	}
	args = argv + optind;
	nargs = argc - optind;
	if (nargs < cmd->nargs_min || nargs > cmd->nargs_max) {
		fprintf(stderr, "usage: vmreset-store %s\n", cmd->usage);
		return 2;
	}
	if ((!strcmp(cmd->name, "save") || !strcmp(cmd->name, "load")) && !o.key_file) {
		vmrs_err("%s needs --key KEYFILE", cmd->name);
		return 2;
	}
	/* load --state FILE: the older spelling of --state-out. */
	if (!strcmp(cmd->name, "load") && o.state_file) {
		if (o.state_out) {
			vmrs_err("--state and --state-out name the same output: give one");
			return 2;
		}
		o.state_out = o.state_file;
		o.state_file = NULL;
	}
	if ((o.state_file || o.profile_file) && strcmp(cmd->name, "save")) {
		vmrs_err("--%s is an option of save", o.state_file ? "state" : "profile");
		return 2;
	}
	if ((o.state_out || o.profile_out) && strcmp(cmd->name, "load")) {
		vmrs_err("--%s is an option of load", o.state_out ? "state-out" : "profile-out");
		return 2;
	}
	if (o.force && strcmp(cmd->name, "delete")) {
		vmrs_err("--force is an option of delete");
		return 2;
	}
	if (o.dirty_file && !o.base) {
		vmrs_err("--dirty needs --base");
		return 2;
	}
	if (shards && ((strcmp(cmd->name, "init") && strcmp(cmd->name, "reshard")) ||
		       !vmrs_is_rados(args[0]))) {
		vmrs_err("--index-shards is an option of init and reshard for rados:// stores (a "
			 "directory store's index is one LMDB file)");
		return 2;
	}
	if (!strcmp(cmd->name, "reshard")) {
		if (!shards) {
			vmrs_err("reshard needs --index-shards N (a power of two, 1 to 4096)");
			return 2;
		}
		return cmd_reshard(args[0], shards, &o);
	}
	if (!strcmp(cmd->name, "init")) {
		int ret = vmrs_store_init(args[0], (uint32_t)bs, (uint32_t)copies, mode, shards);

		if (ret == -EALREADY)
			return 1;	/* the RADOS backend said why */
		if (ret) {
			vmrs_err("init '%s': %s", args[0],
				 ret == -EEXIST ? "already a store" : strerror(-ret));
			return 1;
		}
		printf("store '%s': block size %" PRIu64 ", copies %u, salt %s", args[0], bs,
		       copies, vmrs_salt_names[mode]);
		if (vmrs_is_rados(args[0]))
			printf(", %u index shards", shards ? shards : 32);
		printf("\n");
		return 0;
	}
	if (!strcmp(cmd->name, "keygen")) {
		int ret = vmrs_key_create(args[0]);

		if (ret)
			vmrs_err("keygen '%s': %s", args[0], strerror(-ret));
		return ret ? 1 : 0;
	}
	if (!strcmp(cmd->name, "save"))
		return cmd_save(args[0], args[1], &o);
	if (!strcmp(cmd->name, "load"))
		return cmd_load(args[0], args[1], args[2], &o);
	if (!strcmp(cmd->name, "list"))
		return cmd_list(args[0], &o);
	if (!strcmp(cmd->name, "verify"))
		return cmd_verify(args[0], nargs > 1 ? args[1] : NULL, &o);
	if (!strcmp(cmd->name, "delete"))
		return cmd_delete(args[0], args[1], &o);
	return cmd_gc(args[0], &o);
}
