#!/usr/bin/env python3
"""The module layering, checked at every include.

    epoll -> taps -> evq -> ceq (mailboxes) -> runtime <- uthread

Each source or header under a module folder may include ueq headers of its
own layer and the layers it points to, never one above it. Run with the
source root as argument; prints each upward include and exits 1 if any.
"""
import os
import re
import sys

# The layers each layer may include (its own among them).
ALLOWED = {
    'runtime': {'runtime'},
    'uthread': {'runtime', 'uthread'},
    'ceq': {'runtime', 'ceq'},
    'evq': {'runtime', 'ceq', 'evq'},
    'taps': {'runtime', 'ceq', 'evq', 'taps'},
    'epoll': {'runtime', 'ceq', 'evq', 'taps', 'epoll'},
}
# <ueq/MODULE/...>, <ueq/ceq/evq/...>, <ueq/NAME.h> (a module's C header,
# epoll.h), and quoted relative paths, which are resolved.
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
MODULE_HEADER = re.compile(r'^ueq/([a-z_]+)(/evq)?/')
C_HEADER = re.compile(r'^ueq/([a-z_]+)\.h$')


def layer_of_file(rel):
    parts = rel.split(os.sep)
    top = parts[0]
    if top not in ALLOWED:
        return None
    # ceq/evq/*.cpp and ceq/include/ueq/ceq/evq/*.hpp are the event queues.
    return 'evq' if top == 'ceq' and 'evq' in parts[1:] else top


def layer_of_include(root, path, delim, target):
    """The layer an include names, or None for a header outside the modules."""
    m = MODULE_HEADER.match(target)
    if m:
        return 'evq' if m.group(1) == 'ceq' and m.group(2) else m.group(1)
    m = C_HEADER.match(target)
    if m:
        return m.group(1)
    if delim == '"':
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if os.path.exists(resolved):
            return layer_of_file(os.path.relpath(resolved, root))
    return None


def main():
    root = sys.argv[1]
    bad, checked = [], 0
    for top in ALLOWED:
        base = os.path.join(root, top)
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.endswith(('.cpp', '.hpp', '.h', '.c')):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                layer = layer_of_file(rel)
                if layer is None:
                    continue
                checked += 1
                with open(path, encoding='utf-8') as f:
                    text = f.read()
                for m in INCLUDE.finditer(text):
                    used = layer_of_include(root, path, m.group(1), m.group(2))
                    if used is not None and used not in ALLOWED[layer]:
                        line = text.count('\n', 0, m.start()) + 1
                        bad.append(f'{rel}:{line}: {layer} includes {used} (upward)')
    if checked == 0:
        print('no sources found under', root)
        return 1
    for b in bad:
        print(b)
    print(f'{checked} files checked, {len(bad)} upward includes')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
