#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn vmreset_bench's JSON into a Markdown report and gnuplot plots.

    report.py RESULTS.json OUTDIR [--md PATH] [--img-prefix PREFIX]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

BASELINES = ("M3", "M2")
# vmreset stands out; the baselines keep the same colour in every plot.
STYLE = {"M1": "lc rgb '#9400d3' lw 2", "M2": "lc rgb '#009e73' lw 2",
         "M3": "lc rgb '#56b4e9' lw 2", "M4": "lc rgb '#e69f00' lw 2",
         "vmreset": "lc rgb '#d00000' lw 3", "vmreset-nl": "lc rgb '#600000' lw 2 dt 2"}


def fmt_us(v):
    """Three significant figures, thousands separated."""
    if v >= 1000:
        return f"{round(v, -len(str(int(v))) + 3):,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(r):
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def fmt_stat(s):
    return f"{fmt_us(s['median'])} ({fmt_us(s['min'])}..{fmt_us(s['max'])})"


def fmt_mib(mib):
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def row_keys(series, ram):
    """(d, layout, read_pages) in display order: scattered first, then the rest."""
    keys = {(s["d"], s["layout"], s.get("read_pages", 0)) for s in series if s["ram_mib"] == ram}
    return sorted(keys, key=lambda k: (k[1] != "scattered", k[1], k[0]))


def row_label(key):
    d, layout, reads = key
    if layout == "scattered":
        return f"{d:,}"
    if reads:
        return f"{d:,} (+{reads:,} reads)"
    return f"{d:,} ({layout})"


def method_order(results, present):
    names = [m["name"] for m in results.get("methods", [])]
    names += sorted(m for m in present if m not in names)
    return [m for m in names if m in present]


def time_section(results, key, title):
    series = results.get("series", [])
    out = [f"### {title}\n"]
    for ram in sorted({s["ram_mib"] for s in series}):
        idx = {(s["d"], s["layout"], s.get("read_pages", 0), s["method"]): s
               for s in series if s["ram_mib"] == ram}
        methods = method_order(results, {k[3] for k in idx})
        rows = row_keys(series, ram)
        out.append(f"**{fmt_mib(ram)} of guest RAM**, µs, median (min..max):\n")
        out.append(table(["D"] + methods, [
            [row_label(r)] + [fmt_stat(idx[r + (m,)][key]) if r + (m,) in idx else "–"
                              for m in methods] for r in rows]))
        for base in BASELINES:
            if base not in methods:
                continue
            others = [m for m in methods if m != base]
            cells = []
            for r in rows:
                b = idx.get(r + (base,))
                line = [row_label(r)]
                for m in others:
                    s = idx.get(r + (m,))
                    line.append(fmt_ratio(b[key]["median"] / s[key]["median"]) if b and s else "–")
                cells.append(line)
            out.append(f"Ratio {base} ÷ method (above 1: faster than {base}):\n")
            out.append(table(["D"] + others, cells))
    return "\n".join(out)


def snapshot_section(results):
    snaps = results.get("snapshot", [])
    if not snaps:
        return ""
    idx = {(s["ram_mib"], s["method"]): s for s in snaps}
    methods = method_order(results, {s["method"] for s in snaps})
    rows = [[fmt_mib(ram)] + [fmt_stat(idx[(ram, m)]["us"]) if (ram, m) in idx else "–"
                              for m in methods]
            for ram in sorted({s["ram_mib"] for s in snaps})]
    return ("### Snapshot creation\n\nµs, median (min..max); one sample above 256 MiB.\n\n"
            + table(["RAM"] + methods, rows))


def clones_section(results):
    cl = results.get("clones", [])
    if not cl:
        return ""
    labels = {"M1": "N copies (M1, M3, M4)", "M2": "N MAP_PRIVATE mappings (M2)",
              "vmreset": "N vmresetfs clones"}
    rows = [[labels.get(c["method"], c["method"]), str(c["n"]), fmt_mib(c["ram_mib"]),
             f"{c['dirty_pages_each']:,}", f"{c['mem_mib']:,.1f}", f"{c['per_instance_mib']:,.1f}"]
            for c in cl]
    return ("### Memory of N instances\n\nN ready instances of one snapshot, each with 1% of "
            "its pages dirtied; the snapshot itself included.\n\n"
            + table(["instances", "N", "RAM each", "dirty pages each", "total MiB",
                     "MiB per instance"], rows))


def vmm_section(results):
    vw = results.get("vmm_writes", [])
    if not vw:
        return ""
    rows = [[v["method"], "yes" if v["caught"] else "**no**",
             f"{v['differing_pages']} of {v['vmm_pages']}"] for v in vw]
    v0 = vw[0]
    return ("### VMM-side writes\n\n"
            f"The guest dirtied {v0['d']} pages and the VMM wrote {v0['vmm_pages']} others "
            f"through its mapping of guest RAM ({fmt_mib(v0['ram_mib'])}); then one reset.\n\n"
            + table(["method", "undone", "pages left differing"], rows))


def skipped_section(results):
    sk = results.get("skipped", [])
    if not sk:
        return ""
    return "### Skipped\n\n" + "".join(f"- {s['what']}: {s['why']}\n" for s in sk)


def env_section(env):
    accel = env.get("accel", "?")
    accel = {"tcg": "TCG (software emulation)", "kvm": "KVM"}.get(accel, accel)
    items = [("kernel", env.get("kernel")), ("CPU (as the test VM sees it)", env.get("cpu")),
             ("host CPU", env.get("host_cpu")), ("virtualisation", accel),
             ("test VM", f"{env.get('cpus', '?')} vCPUs, {env.get('vm_mem_mib', '?')} MiB"),
             ("date", env.get("date")), ("command", f"`{env['command']}`" if env.get("command") else None),
             ("duration", f"{env['duration_s']} s in the VM" if "duration_s" in env else None)]
    return "### Environment\n\n" + "".join(f"- {k}: {v}\n" for k, v in items if v is not None)


def gnuplot(script, data, outdir):
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in data.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        r = subprocess.run(["gnuplot"], input=script, text=True, cwd=tmp,
                           capture_output=True)
        if r.returncode:
            sys.exit(f"report.py: gnuplot failed: {r.stderr.strip()}")


def plot(outdir, fname, title, xlabel, lines):
    """lines: {method: [(x, median, min, max)]}; drawn if some line has 2 points."""
    lines = {m: sorted(p) for m, p in lines.items() if p}
    if not any(len(p) >= 2 for p in lines.values()):
        return None
    data, plots = {}, []
    for i, (m, pts) in enumerate(lines.items()):
        data[f"d{i}.dat"] = "".join(f"{x} {med} {lo} {hi}\n" for x, med, lo, hi in pts)
        style = STYLE.get(m, "lw 2")
        plots.append(f"'d{i}.dat' using 1:2:3:4 with yerrorlines {style} pt 7 ps 0.8 title '{m}'")
    script = f"""set terminal pngcairo size 900,560 font 'sans,10'
set output '{os.path.abspath(os.path.join(outdir, fname))}'
set title '{title}'
set xlabel '{xlabel}'
set ylabel 'µs (median, min..max)'
set logscale xy
set grid
set key outside right top
set format y '%.0s%c'
plot {', '.join(plots)}
"""
    gnuplot(script, data, outdir)
    return fname


def plots(results, outdir):
    series = [s for s in results.get("series", []) if s["layout"] == "scattered"]
    accel = results.get("env", {}).get("accel", "").upper() or "?"
    files = []
    rams = sorted({s["ram_mib"] for s in series})
    for ram in sorted({rams[0], rams[-1]}) if rams else []:
        for key, what in (("reset_us", "reset"), ("cycle_us", "cycle")):
            lines = {}
            for s in series:
                if s["ram_mib"] == ram:
                    st = s[key]
                    lines.setdefault(s["method"], []).append((s["d"], st["median"], st["min"], st["max"]))
            files.append(plot(outdir, f"{what}_vs_d_{ram}.png",
                              f"{what} time vs dirtied pages, {fmt_mib(ram)} guest RAM ({accel})",
                              "D, dirtied 4 KiB pages", lines))
    for d in (256, 4096):
        lines = {}
        for s in series:
            if s["d"] == d:
                st = s["reset_us"]
                lines.setdefault(s["method"], []).append((s["ram_mib"], st["median"], st["min"], st["max"]))
        files.append(plot(outdir, f"reset_vs_ram_d{d}.png",
                          f"reset time vs guest RAM, D = {d} ({accel})", "guest RAM, MiB", lines))
    return [f for f in files if f]


def write_report(results, outdir, md_path, img_prefix):
    os.makedirs(outdir, exist_ok=True)
    images = plots(results, outdir)
    parts = [env_section(results.get("env", {})),
             time_section(results, "reset_us", "Reset time"),
             time_section(results, "cycle_us",
                          "Cycle time (reset + next guest run dirtying the same pages)"),
             snapshot_section(results), clones_section(results), vmm_section(results),
             skipped_section(results)]
    if images:
        parts.append("### Plots\n\n" + "".join(f"![{f[:-4]}]({img_prefix}{f})\n\n" for f in images))
    text = "\n".join(p for p in parts if p).rstrip() + "\n"
    with open(md_path, "w") as f:
        f.write(text)
    return text


def main():
    ap = argparse.ArgumentParser(description="Markdown report and plots from vmreset_bench JSON.")
    ap.add_argument("results", help="the JSON that vmreset_bench (via make bench) wrote")
    ap.add_argument("outdir", help="where the PNG plots go (created)")
    ap.add_argument("--md", help="the Markdown file (default: OUTDIR/report.md)")
    ap.add_argument("--img-prefix", help="prefix of image links (default: OUTDIR relative to the Markdown)")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("report.py: gnuplot is missing (apt-get install gnuplot-nox)")
    try:
        with open(a.results) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"report.py: {a.results}: {e}")
    if not isinstance(results, dict) or "series" not in results:
        sys.exit(f"report.py: {a.results}: no \"series\"; not vmreset_bench output")
    md = a.md or os.path.join(a.outdir, "report.md")
    prefix = a.img_prefix
    if prefix is None:
        rel = os.path.relpath(a.outdir, os.path.dirname(os.path.abspath(md)))
        prefix = "" if rel == "." else rel + "/"
    try:
        write_report(results, a.outdir, md, prefix)
    except (KeyError, TypeError) as e:
        sys.exit(f"report.py: {a.results}: malformed: {e!r}")


if __name__ == "__main__":
    main()
