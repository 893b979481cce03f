"""What a terminal shows after a program wrote `output` to it: the lines of its screen and scrollback.

Enough of a terminal for what rich's live display writes: text, carriage return, newline, cursor
up and down, erase in line, and the codes it ignores (colours, showing and hiding the cursor).

    screen("a\\nb\\r\\x1b[2Kc")   ->  ["a", "c"]
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])")


def screen(output: str) -> list[str]:
    lines: list[list[str]] = [[]]
    row = column = 0
    position = 0
    while position < len(output):
        control = _CONTROL.match(output, position)
        if control:
            private, parameter, command = control.groups()
            # Cursor movements take one number; colours (`m`) and modes (`?25l`) are skipped.
            count = int(parameter or 1) if command in "ABG" and not private else 0
            if command == "A":
                row = max(0, row - count)
            elif command == "B":
                row += count
            elif command == "K":
                line = lines[row]
                if parameter == "2":
                    line.clear()
                elif parameter in ("", "0"):
                    del line[column:]
                else:  # 1: from the start of the line to the cursor
                    line[: column + 1] = [" "] * min(len(line), column + 1)
            elif command == "G":
                column = count - 1
            position = control.end()
            while len(lines) <= row:
                lines.append([])
            continue
        character = output[position]
        position += 1
        if character == "\r":
            column = 0
        elif character == "\n":
            row, column = row + 1, 0
            while len(lines) <= row:
                lines.append([])
        elif character == "\x1b":
            continue  # a code this terminal does not know: skipped
        else:
            line = lines[row]
            line.extend(" " * (column - len(line)))
            if column < len(line):
                line[column] = character
            else:
                line.append(character)
            column += 1
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text
