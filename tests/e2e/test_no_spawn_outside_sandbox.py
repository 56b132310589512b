"""sandbox/ is the one way harrier starts a process: nothing in lib, workflow, protocol,
actions or runner may fork, exec or spawn (fork, vfork, clone, posix_spawn, exec*, uv_spawn,
system, popen)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDERS = ["lib", "workflow", "protocol", "actions", "runner"]
FORBIDDEN = re.compile(
    r"(?<![\w.>])(fork|vfork|clone3?|posix_spawnp?|posix_spawn_\w+|execl|execlp|execle|execv|"
    r"execvp|execvpe|execve|execveat|fexecve|uv_spawn|system|popen)\s*\(")
RAW_SYSCALL = re.compile(r"\bSYS_(fork|vfork|clone3?|execve|execveat)\b|\b__NR_(fork|vfork|clone3?|execve)")


def strip_comments_and_strings(text):
    """Blanks out comments, string and character literals, keeping line numbers."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def offenders(root):
    found = []
    for folder in FOLDERS:
        base = os.path.join(root, folder)
        for dirpath, _, files in os.walk(base):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    code = strip_comments_and_strings(f.read())
                for lineno, line in enumerate(code.splitlines(), 1):
                    m = FORBIDDEN.search(line) or RAW_SYSCALL.search(line)
                    if m:
                        found.append(f"{os.path.relpath(path, root)}:{lineno}: {m.group(0)}")
    return found


def test_nothing_outside_sandbox_starts_a_process():
    found = offenders(ROOT)
    assert not found, "start processes through sandbox/ (sandbox_spawn) instead:\n" + "\n".join(found)


def test_the_check_finds_a_spawn(tmp_path):
    """The scanner itself: a call is found, a mention in a comment or string is not."""
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "bad.c").write_text(
        '/* fork() here is a comment */\nconst char *s = "popen(x)";\n'
        "int f(void) { return system(\"ls\"); }\nvoid g(void) { pid_t p = fork (); }\n"
        "void h(void) { execvp(a, b); uv_spawn(l, &p, &o); syscall(SYS_clone3, 0); }\n"
        "int my_system(void); int x = obj.system(1); int y = my_fork(2);\n")
    found = offenders(str(tmp_path))
    assert [f.split(":")[1] for f in found] == ["3", "4", "5"], found
