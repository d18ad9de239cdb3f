#!/usr/bin/python3
"""Check one generated case against gdb's view of it, so a case whose ground truth is wrong
(or whose core is not sane) fails at generation time instead of in a test.

  verify.py core  CASEDIR   -> scores CASEDIR/gdb-bt.txt against CASEDIR/expected.json with the
                               corpus matcher (tools/check.py), checks that the tid the program
                               printed (crash_tid=N in run.stdout) is the core's crashing thread,
                               and checks the optional per-thread expectations (thread_frames).
                               Writes CASEDIR/gdb-check.json; exit 1 if anything is wrong.
  verify.py live  EXPECTED.json STDOUT GDB-OUTPUT
                            -> the same for a live process (live/hang.c): every role's thread,
                               named by its tid in STDOUT, must show the role's frames.

The matcher is the shared corpus's tools/check.py (env CORESNAP_CORPUS_TOOLS, default
/work/shared/corpus/tools): one matcher for both corpora."""
import json, os, re, sys

TOOLS = os.environ.get("CORESNAP_CORPUS_TOOLS", "/work/shared/corpus/tools")
if not os.path.isfile(os.path.join(TOOLS, "check.py")):
    sys.exit("verify.py: %s/check.py not found (set CORESNAP_CORPUS_TOOLS to the corpus tools folder)" % TOOLS)
sys.path.insert(0, TOOLS)
import check  # noqa: E402


def gdb_text(path):
    """gdb's output with gdb 13's aarch64 "0x... [PAC] in fn" marker (the saved return address
    carried a pointer-authentication code) reduced to "0x... in fn", which check.py parses."""
    text = open(path, errors="replace").read()
    return re.sub(r"^(#\d+\s+0x[0-9a-f]+) \[PAC\] in ", r"\1 in ", text, flags=re.M)


def thread_names(text):
    threads, _ = check.parse_gdb(text)
    raw = [f["fn"] for fr in threads.values() for f in fr]
    dem = check.demangle_all(raw)
    k = 0
    for fr in threads.values():
        for f in fr:
            f["norm"] = check.norm(dem[k]); k += 1
    return {tid: [f["norm"] for f in fr] for tid, fr in threads.items()}


def frames_match(names, spec):
    toks = check.expand(spec["frames"])
    if spec.get("match", "prefix") == "prefix":
        starts = [0]
    else:
        starts = [i for i, n in enumerate(names) if toks and toks[0] is not check.ANY
                  and check.name_eq(n, toks[0])] or [0]
    return any(check.match_from(names, s, toks)[0] for s in starts)


def verify_core(casedir):
    exp_path = os.path.join(casedir, "expected.json")
    exp = json.load(open(exp_path))
    problems = []
    normalised = os.path.join(casedir, "gdb-bt.normalised.txt")
    with open(normalised, "w") as f:
        f.write(gdb_text(os.path.join(casedir, "gdb-bt.txt")))
    verdict = check.check("gdb", normalised, exp_path)
    os.unlink(normalised)
    if not verdict["correct"]:
        problems.append("gdb's backtrace does not match expected.json: %s" % json.dumps(
            {k: verdict.get(k) for k in ("frames_ok", "frames_progress", "threads_seen",
                                         "threads_expected", "other_threads_ok", "crash_top")}))
    out = open(os.path.join(casedir, "run.stdout")).read()
    m = re.search(r"^crash_tid=(\d+)$", out, re.M)
    if not m:
        problems.append("the program did not print crash_tid=N")
    elif int(m.group(1)) != exp["crash_tid"]:
        problems.append("the program crashed on tid %s but the core's first thread is %s"
                        % (m.group(1), exp["crash_tid"]))
    names = thread_names(gdb_text(os.path.join(casedir, "gdb-bt.txt")))
    for tid, spec in exp.get("thread_frames", {}).items():
        if not frames_match(names.get(int(tid), []), spec):
            problems.append("thread %s: gdb shows %s, expected %s" % (tid, names.get(int(tid)), spec))
    verdict["printed_crash_tid"] = int(m.group(1)) if m else None
    verdict["problems"] = problems
    json.dump(verdict, open(os.path.join(casedir, "gdb-check.json"), "w"), indent=1)
    return problems


def verify_live(expected, stdout, gdb_out):
    exp = json.load(open(expected))
    roles = {}
    for line in open(stdout):
        p = line.split()
        if len(p) == 3 and p[0] == "tid":
            roles[p[2]] = int(p[1])
    names = thread_names(gdb_text(gdb_out))
    problems = []
    if set(roles) != set(exp["roles"]):
        problems.append("roles printed %s != expected %s" % (sorted(roles), sorted(exp["roles"])))
    if len(names) != exp["threads"]:
        problems.append("gdb saw %d threads, expected %d" % (len(names), exp["threads"]))
    for role, spec in exp["roles"].items():
        tid = roles.get(role)
        if tid is None or not frames_match(names.get(tid, []), spec):
            problems.append("%s (tid %s): gdb shows %s" % (role, tid, names.get(tid)))
    return problems


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "core":
        problems = verify_core(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "live":
        problems = verify_live(*sys.argv[2:])
    else:
        sys.exit(__doc__)
    for p in problems:
        print("verify: " + p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
