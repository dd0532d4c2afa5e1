#!/usr/bin/env python3
"""Check that the netlink spec (docs/netlink/vmreset.yaml), the UAPI header
and the kernel's per-operation policies agree, so none can drift.

Exits 1 naming every disagreement."""
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("check-spec: python3-yaml is missing; run: sudo scripts/deps.sh")

top = Path(__file__).resolve().parent.parent
spec = yaml.safe_load((top / "docs/netlink/vmreset.yaml").read_text())
hdr = (top / "include/uapi/linux/vmreset.h").read_text()
kern = (top / "kmod/netlink.c").read_text()
errors = []


def c_name(prefix, name):
    return prefix + name.upper().replace("-", "_")


def enum_values(enum_name):
    """Enumerator -> value of a C enum in the header (implicit values)."""
    m = re.search(r"enum %s \{(.*?)\};" % enum_name, hdr, re.S)
    if not m:
        errors.append("header: no enum %s" % enum_name)
        return {}
    vals, nxt = {}, 0
    for item in re.findall(r"^\s*(\w+)\s*(?:=\s*([^,]+))?,", m.group(1), re.M):
        name, val = item
        if val:
            if val.strip() in vals:
                nxt = vals[val.strip()]
            else:
                continue            # FOO_MAX = __FOO_MAX - 1
        vals[name] = nxt
        nxt += 1
    return vals


def check_enum(enum_name, prefix, names):
    vals = enum_values(enum_name)
    for i, name in enumerate(names, start=1):
        cn = c_name(prefix, name)
        if vals.get(cn) != i:
            errors.append("%s: spec has %s = %d, header has %s" %
                          (enum_name, cn, i, vals.get(cn)))
    real = [n for n in vals if not n.startswith("__") and not n.endswith("_MAX")
            and not n.endswith("_UNSPEC")]
    extra = set(real) - {c_name(prefix, n) for n in names}
    if extra:
        errors.append("%s: in the header, not the spec: %s" %
                      (enum_name, ", ".join(sorted(extra))))


sets = {s["name"]: s for s in spec["attribute-sets"]}
check_enum("vmreset_a", "VMRESET_A_", [a["name"] for a in sets["vmreset"]["attributes"]])
check_enum("vmreset_a_range", "VMRESET_A_", [a["name"] for a in sets["range"]["attributes"]])
check_enum("vmreset_a_slot", "VMRESET_A_", [a["name"] for a in sets["slot"]["attributes"]])
ops = spec["operations"]["list"]
check_enum("vmreset_cmd", "VMRESET_CMD_", [o["name"] for o in ops])

types = {a["name"]: a["type"] for a in sets["vmreset"]["attributes"]}
nla = {"u64": "NLA_U64", "u32": "NLA_U32", "string": "NLA_NUL_STRING", "flag": "NLA_FLAG",
       "nest": "NLA_NESTED"}

# The kernel's policies: name -> {attr: type}; ops: cmd -> policy name.
policies = {}
for name, body in re.findall(r"nla_policy (\w+)\[[^\]]*\] = \{(.*?)\};", kern, re.S):
    policies[name] = dict(re.findall(r"\[(VMRESET_A_\w+)\] = \{ \.type = (\w+)", body))
kops = {}
for body in re.findall(r"\{\s*(\.cmd = .*?)\}", kern, re.S):
    cmd = re.search(r"\.cmd = (\w+)", body).group(1)
    pol = re.search(r"\.policy = (\w+)", body)
    kops[cmd] = pol.group(1) if pol else None

for op in ops:
    cmd = c_name("VMRESET_CMD_", op["name"])
    if "event" in op:
        if cmd in kops:
            errors.append("%s: a notification, but the kernel accepts it" % cmd)
        continue
    if cmd not in kops:
        errors.append("%s: in the spec, no kernel op" % cmd)
        continue
    want = {c_name("VMRESET_A_", a): nla[types[a]]
            for a in op["do"]["request"]["attributes"]}
    have = policies.get(kops[cmd], {})
    if want != have:
        errors.append("%s: spec request %s, kernel policy %s" % (cmd, want, have))
    if ("dump" in op) != (".dumpit" in kern.split(".cmd = " + cmd)[1].split("}")[0]):
        errors.append("%s: dump in spec and kernel differ" % cmd)

for e in errors:
    print("check-spec:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
