#!/usr/bin/env python3
"""The docs' code is tested: every C and C++ block of README.md and
docs/guide.md is compiled against a staged install of ueq with the line the
docs give (`c++ -std=c++20 prog.cpp $(pkg-config --cflags --libs ueq)`), with
-Wall -Werror, and a block that is a whole program (it defines main) is
linked and run and must exit 0.

A block that is not a whole program is a fragment: its #include lines go to
the top of a file and the rest becomes the body of a function, compiled
only (unused variables are allowed there: a fragment shows how a value is
obtained, not what the program does with it). Directives in HTML comments
on the lines right above a block's fence, one per line, tell more:

  <!-- docs: top-level -->          the block is definitions, not statements
  <!-- docs: given: DECLARATIONS -->  what the fragment assumes exists
  <!-- docs: returns: TYPE -->      the fragment returns a value of TYPE
  <!-- docs: with: previous -->     the previous block's code comes first
  <!-- docs: run: ARGS -->          a program's arguments when it is run
  <!-- docs: skip: REASON -->       not compiled, for the reason given

usage: blocks.py BUILD_DIR SOURCE_DIR
"""
import concurrent.futures
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

FILES = ["README.md", "docs/guide.md"]
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*docs:\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->\s*$")


def blocks(path, rel):
    """Yields dicts: where, lang, code, directives (in file order)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        directives = {}
        k = start - 1
        while k >= 0 and DIRECTIVE.match(lines[k]):
            d = DIRECTIVE.match(lines[k])
            directives[d.group(1)] = d.group(2) or ""
            k -= 1
        if lang in ("c", "cpp"):
            yield {"where": f"{rel}:{start + 1}", "lang": lang,
                   "code": "\n".join(lines[start + 1:j]), "directives": directives}
        i = j + 1


def assemble(block, previous):
    """The source to compile, and whether it is a whole program."""
    d = block["directives"]
    code = block["code"]
    if "with" in d:
        if d["with"] != "previous" or previous is None:
            raise ValueError("'with' takes 'previous', after another block")
        code = previous["code"] + "\n" + code
    if re.search(r"\bint\s+main\s*\(", code):
        return code + "\n", True
    includes = [l for l in code.split("\n") if l.startswith("#include")]
    body = [l for l in code.split("\n") if not l.startswith("#include")]
    given = d.get("given", "")
    if "top-level" in d:
        return "\n".join(includes + [given] + body) + "\n", False
    ret = d.get("returns", "void")
    tail = f"  return {ret}{{}};\n" if ret != "void" else ""
    return ("\n".join(includes) + f"\n{given}\n[[maybe_unused]] static {ret} docs_fragment() {{\n" +
            "\n".join(body) + f"\n{tail}}}\n"), False


def check(block, source, program, flags, work):
    where = block["where"]
    ext = ".c" if block["lang"] == "c" else ".cpp"
    name = re.sub(r"[^A-Za-z0-9]", "_", where)
    src = os.path.join(work, name + ext)
    with open(src, "w", encoding="utf-8") as f:
        f.write(source)
    compiler = ["cc", "-std=c11"] if block["lang"] == "c" else ["c++", "-std=c++20"]
    warn = ["-Wall", "-Werror"]
    if not program:
        warn += ["-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Wno-unused-function"]
    out = os.path.join(work, name)
    cmd = compiler + warn + [src] + (["-o", out] + flags if program else ["-c", "-o", out + ".o"] +
                                      [f for f in flags if f.startswith("-I")])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"{where}: does not compile:\n  {shlex.join(cmd)}\n{r.stderr}\n--- source ---\n{source}"
    if not program:
        return True, f"{where}: fragment compiles"
    args = shlex.split(block["directives"].get("run", ""))
    try:
        r = subprocess.run([out] + args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, f"{where}: the program did not exit within 60 s"
    if r.returncode != 0:
        return False, f"{where}: the program exited {r.returncode}:\n{r.stdout}{r.stderr}"
    return True, f"{where}: program compiles and runs (exit 0)"


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    build, source = (os.path.abspath(p) for p in sys.argv[1:])
    for tool in ("cc", "c++", "pkg-config", "meson"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not installed")
            return 77
    with tempfile.TemporaryDirectory() as stage:
        subprocess.run(["meson", "install", "-C", build, "--destdir", stage, "--no-rebuild",
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
        pcs = [os.path.join(d, "ueq.pc") for d, _, fs in os.walk(stage) if "ueq.pc" in fs]
        if not pcs:
            print("FAIL: no ueq.pc installed")
            return 1
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ueq"], env=env, check=True,
                               capture_output=True, text=True).stdout.split()
        print("flags: $(pkg-config --cflags --libs ueq) =", " ".join(flags))
        jobs, previous, failures, skipped = [], None, [], 0
        for rel in FILES:
            for block in blocks(os.path.join(source, rel), rel):
                if "skip" in block["directives"]:
                    print(f"{block['where']}: skipped ({block['directives']['skip']})")
                    skipped += 1
                else:
                    try:
                        jobs.append((block, *assemble(block, previous)))
                    except ValueError as e:
                        failures.append(f"{block['where']}: {e}")
                previous = block
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = pool.map(lambda j: check(j[0], j[1], j[2], flags, stage), jobs)
            for ok, message in results:
                print(message if ok else "FAIL " + message)
                if not ok:
                    failures.append(message)
    print(f"{len(jobs) - len(failures)} of {len(jobs)} blocks pass; {skipped} skipped by a marker")
    return 1 if failures or not jobs else 0


if __name__ == "__main__":
    sys.exit(main())
