#!/usr/bin/env python3
"""Turns a schema file into a C++ header holding its text, so binaries parse the schema they
were built with (no file to find at run time). Usage: embed_text.py INPUT OUTPUT.
The symbol is derived from the file name: config.fbs -> herald::schemas::kConfigFbs."""
import os
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = sys.argv[1], sys.argv[2]
    with open(src, 'rb') as f:
        data = f.read()
    base, ext = os.path.splitext(os.path.basename(src))
    symbol = 'k' + ''.join(p.capitalize() for p in base.split('_')) + ext[1:].capitalize()
    lines = []
    for i in range(0, len(data), 16):
        lines.append('    "' + ''.join('\\x%02x' % b for b in data[i:i + 16]) + '"')
    text = (
        '// Generated from %s by schemas/embed_text.py at build time; do not edit.\n'
        '#pragma once\n\n'
        '#include <string_view>\n\n'
        'namespace herald::schemas {\n\n'
        '// Every byte escaped, so no text in the schema can end the literal early.\n'
        'inline constexpr char %sData[] =\n%s;\n'
        'inline constexpr std::string_view %s(%sData, sizeof(%sData) - 1);\n\n'
        '}  // namespace herald::schemas\n'
    ) % (os.path.basename(src), symbol, '\n'.join(lines), symbol, symbol, symbol)
    with open(out, 'w') as f:
        f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
