#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn vmreset_bench's JSON into a Markdown report and gnuplot plots.

    report.py RESULTS.json OUTDIR [--md PATH] [--img-prefix PREFIX]

The plots (PNG, gnuplot's pngcairo terminal) go into OUTDIR, the Markdown to
--md (default OUTDIR/report.md). write_report() does the same when imported.
Entries missing from a partial run show as "–" or are left out.
"""
import argparse
import json
import math
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
NONE = "–"


def fmt_us(v):
    """Three significant figures, thousands separated: 0.0123, 4.56, 78.9, 12,300."""
    if v == 0:
        return "0"
    v = float(f"{v:.3g}")
    return f"{v:,.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def fmt_ratio(r):
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def fmt_stat(s):
    return f"{fmt_us(s['median'])} ({fmt_us(s['min'])}..{fmt_us(s['max'])})"


def stat(st):
    """{median, min, max} from a statistic that has at least a median, else None."""
    if not isinstance(st, dict) or "median" not in st:
        return None
    return {k: st.get(k, st["median"]) for k in ("median", "min", "max")}


def fmt_mib(mib):
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib:,} MiB"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def series_of(results):
    """The series entries that say where they belong, layout defaulted, statistics
    without a median dropped."""
    out = []
    for s in results.get("series", []):
        if {"ram_mib", "d", "method"} <= s.keys():
            s = dict(s, layout=s.get("layout", "scattered"), read_pages=s.get("read_pages", 0))
            for key in ("reset_us", "cycle_us"):
                if stat(s.get(key)):
                    s[key] = stat(s[key])
                else:
                    s.pop(key, None)
            out.append(s)
    return out


def row_keys(series, ram):
    """(d, layout, read_pages) in display order: scattered first, then the rest."""
    keys = {(s["d"], s["layout"], s["read_pages"]) for s in series if s["ram_mib"] == ram}
    return sorted(keys, key=lambda k: (k[1] != "scattered", k[1], k[0]))


def row_label(key):
    d, layout, reads = key
    if layout == "scattered":
        return f"{d:,}"
    if reads:
        return f"{d:,} (+{reads:,} reads)"
    return f"{d:,} ({layout})"


def method_order(results, present):
    names = [m["name"] for m in results.get("methods", []) if "name" in m]
    names += sorted(m for m in present if m not in names)
    return [m for m in names if m in present]


def time_section(results, key, title):
    series = [s for s in series_of(results) if key in s]
    if not series:
        return ""
    out = [f"### {title}\n",
           f"Per guest RAM size: µs, then the ratio of {' and of '.join(BASELINES)} to each "
           "method, median over median (above 1: the method is faster than that baseline).\n"]
    for ram in sorted({s["ram_mib"] for s in series}):
        idx = {(s["d"], s["layout"], s["read_pages"], s["method"]): s[key]
               for s in series if s["ram_mib"] == ram}
        methods = method_order(results, {k[3] for k in idx})
        rows = row_keys(series, ram)
        out.append(f"**{fmt_mib(ram)} of guest RAM**, µs, median (min..max):\n")
        out.append(table(["D"] + methods, [
            [row_label(r)] + [fmt_stat(idx[r + (m,)]) if r + (m,) in idx else NONE
                              for m in methods] for r in rows]))
        for base in BASELINES:
            others = [m for m in methods if m != base]
            if base not in methods or not others:
                continue
            cells = []
            for r in rows:
                b = idx.get(r + (base,))
                line = [row_label(r)]
                for m in others:
                    s = idx.get(r + (m,))
                    ok = b and s and s["median"] > 0
                    line.append(fmt_ratio(b["median"] / s["median"]) if ok else NONE)
                cells.append(line)
            out.append(f"Ratio {base} ÷ method (above 1: faster than {base}):\n")
            out.append(table(["D"] + others, cells))
    return "\n".join(out)


def snapshot_section(results):
    snaps = [s for s in results.get("snapshot", [])
             if {"ram_mib", "method"} <= s.keys() and stat(s.get("us"))]
    if not snaps:
        return ""
    idx = {(s["ram_mib"], s["method"]): stat(s["us"]) for s in snaps}
    methods = method_order(results, {s["method"] for s in snaps})
    rows = [[fmt_mib(ram)] + [fmt_stat(idx[(ram, m)]) if (ram, m) in idx else NONE
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

    def num(c, k, f):
        return format(c[k], f) if k in c else NONE
    rows = [[labels.get(c.get("method"), c.get("method", "?")), num(c, "n", "d"),
             fmt_mib(c["ram_mib"]) if "ram_mib" in c else NONE, num(c, "dirty_pages_each", ",d"),
             num(c, "mem_mib", ",.1f"), num(c, "per_instance_mib", ",.1f")] for c in cl]
    return ("### Memory of N instances\n\nN ready instances of one snapshot, each with 1% of "
            "its pages dirtied; the snapshot itself included.\n\n"
            + table(["instances", "N", "RAM each", "dirty pages each", "total MiB",
                     "MiB per instance"], rows))


def vmm_section(results):
    vw = [v for v in results.get("vmm_writes", []) if {"method", "caught"} <= v.keys()]
    if not vw:
        return ""
    rows = [[v["method"], "yes" if v["caught"] else "**no**",
             f"{v.get('differing_pages', '?')} of {v.get('vmm_pages', '?')}"] for v in vw]
    v0 = vw[0]
    ram = f" ({fmt_mib(v0['ram_mib'])})" if "ram_mib" in v0 else ""
    return ("### VMM-side writes\n\n"
            f"The guest dirtied {v0.get('d', '?')} pages and the VMM wrote "
            f"{v0.get('vmm_pages', '?')} others through its mapping of guest RAM{ram}; "
            "then one reset.\n\n"
            + table(["method", "undone", "pages left differing"], rows))


def skipped_section(results):
    sk = results.get("skipped", [])
    if not sk:
        return ""
    return "### Skipped\n\n" + "".join(f"- {s.get('what', '?')}: {s.get('why', '?')}\n" for s in sk)


def env_section(env):
    accel = env.get("accel")
    accel = {"tcg": "TCG (software emulation)", "kvm": "KVM"}.get(accel, accel)
    vm = None
    if "vm_mem_mib" in env:
        vm = (f"{env['cpus']} vCPUs, " if "cpus" in env else "") + fmt_mib(env["vm_mem_mib"])
    dur = env.get("duration_s")
    if dur is not None:
        dur = f"{dur:,.0f} s ({int(dur) // 60} min {int(dur) % 60} s) in the VM"
    items = [("kernel", env.get("kernel")), ("CPU (as the test VM sees it)", env.get("cpu")),
             ("host CPU", env.get("host_cpu")), ("virtualisation", accel), ("test VM", vm),
             ("date", env.get("date")),
             ("command", f"`{env['command']}`" if env.get("command") else None),
             ("duration", dur)]
    lines = "".join(f"- {k}: {v}\n" for k, v in items if v is not None)
    return "### Environment\n\n" + (lines or "Not recorded.\n")


def gp_str(s):
    """A single-quoted gnuplot string."""
    return "'" + str(s).replace("'", "''") + "'"


def run_gnuplot(script, data):
    """Runs script in a temp dir holding the data files {name: text}."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in data.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        r = subprocess.run(["gnuplot"], input=script, text=True, cwd=tmp, capture_output=True)
    if r.returncode:
        raise RuntimeError(f"gnuplot failed: {r.stderr.strip()}")


def plot(outdir, fname, title, xlabel, xtic, lines):
    """lines: {method: [(x, median, min, max)]}; drawn if some line has 2 points.

    Log-log; xtic(x) labels the x values present.  Returns fname or None.
    """
    lines = {m: sorted(p for p in pts if p[0] > 0 and p[1] > 0) for m, pts in lines.items()}
    lines = {m: p for m, p in lines.items() if p}
    if not any(len(p) >= 2 for p in lines.values()):
        return None
    xs = sorted({p[0] for pts in lines.values() for p in pts})
    data, plots = {}, []
    for i, (m, pts) in enumerate(lines.items()):
        # a non-positive min would fall off the log axis: clamp it to the median
        data[f"d{i}.dat"] = "".join(f"{x} {med} {lo if lo > 0 else med} {hi}\n"
                                    for x, med, lo, hi in pts)
        plots.append(f"'d{i}.dat' using 1:2:3:4 with yerrorlines {STYLE.get(m, 'lw 2')} "
                     f"pt 7 ps 0.8 title {gp_str(m)}")
    tics = ", ".join(f"{gp_str(xtic(x))} {x}" for x in xs)
    script = f"""set terminal pngcairo size 900,560 font 'sans,10' noenhanced
set output {gp_str(os.path.abspath(os.path.join(outdir, fname)))}
set title {gp_str(title)}
set xlabel {gp_str(xlabel)}
set ylabel 'µs (median, bars: min..max)'
set logscale xy
set xrange [{xs[0] / 1.6}:{xs[-1] * 1.6}]
set xtics ({tics})
set grid
set key outside right top
set format y '%g'
plot {', '.join(plots)}
"""
    run_gnuplot(script, data)
    return fname


def points(series, key, select, xkey):
    """{method: [(x, median, min, max)]} from the selected series entries."""
    lines = {}
    for s in series:
        if select(s) and key in s:
            st = s[key]
            lines.setdefault(s["method"], []).append((s[xkey], st["median"], st["min"], st["max"]))
    return lines


def plots(results, outdir):
    """Draws the plots that have data; returns the file names written."""
    series = [s for s in series_of(results) if s["layout"] == "scattered"]
    accel = results.get("env", {}).get("accel", "").upper() or "?"
    files = []
    rams = sorted({s["ram_mib"] for s in series})
    for ram in sorted({rams[0], rams[-1]}) if rams else []:
        for key, what in (("reset_us", "reset"), ("cycle_us", "cycle")):
            lines = points(series, key, lambda s: s["ram_mib"] == ram, "d")
            files.append(plot(outdir, f"{what}_vs_d_{ram}.png",
                              f"{what} time vs dirtied pages, {fmt_mib(ram)} guest RAM ({accel})",
                              "D, dirtied 4 KiB pages (scattered)", lambda x: f"{x:,}", lines))
    for d in (256, 4096):
        lines = points(series, "reset_us", lambda s: s["d"] == d, "ram_mib")
        files.append(plot(outdir, f"reset_vs_ram_d{d}.png",
                          f"reset time vs guest RAM, D = {d:,} scattered pages ({accel})",
                          "guest RAM", fmt_mib, lines))
    return [f for f in files if f]


def write_report(results: dict, outdir: str, md_path: str, img_prefix: str) -> str:
    """Writes the plots into outdir and the Markdown to md_path; returns the Markdown.

    Raises RuntimeError if gnuplot fails, OSError on I/O errors.
    """
    os.makedirs(outdir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
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
    ap = argparse.ArgumentParser(description="Markdown report and gnuplot plots from "
                                 "vmreset_bench's JSON.")
    ap.add_argument("results", help="the JSON that vmreset_bench (via make bench) wrote")
    ap.add_argument("outdir", help="where the PNG plots go (created)")
    ap.add_argument("--md", help="the Markdown file (default: OUTDIR/report.md)")
    ap.add_argument("--img-prefix", help="prefix of the image links (default: the path of "
                    "OUTDIR relative to the Markdown file's directory)")
    a = ap.parse_args()
    if not shutil.which("gnuplot"):
        sys.exit("report.py: gnuplot is missing (apt-get install gnuplot-nox)")
    try:
        with open(a.results) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"report.py: {a.results}: {e}")
    known = ("series", "snapshot", "clones", "vmm_writes")
    if not isinstance(results, dict) or not any(k in results for k in known):
        sys.exit(f"report.py: {a.results}: none of {', '.join(known)}; not vmreset_bench output")
    md = a.md or os.path.join(a.outdir, "report.md")
    prefix = a.img_prefix
    if prefix is None:
        rel = os.path.relpath(os.path.abspath(a.outdir), os.path.dirname(os.path.abspath(md)))
        prefix = "" if rel == "." else rel + "/"
    try:
        write_report(results, a.outdir, md, prefix)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        sys.exit(f"report.py: {a.results}: malformed: {e!r}")
    except (OSError, RuntimeError) as e:
        sys.exit(f"report.py: {e}")


if __name__ == "__main__":
    main()
