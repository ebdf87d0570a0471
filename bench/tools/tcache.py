# gdb script (needs glibc's debug symbols, Debian: libc6-dbg): for every thread of the attached
# process, the chunks its malloc tcache holds (freed, kept for reuse by that thread only) and
# their bytes. Usage: gdb -p PID -batch -x bench/tools/tcache.py
import gdb

total_bytes = 0
total_chunks = 0
threads_with = 0
per_thread = []
for inferior in gdb.inferiors():
    for thread in inferior.threads():
        thread.switch()
        try:
            tc = gdb.parse_and_eval("tcache")
        except gdb.error as e:
            print("cannot read tcache:", e)
            raise SystemExit
        if int(tc) == 0:
            continue
        counts = tc["counts"]
        n = int(counts.type.range()[1]) + 1
        chunks = 0
        nbytes = 640  # the tcache_perthread_struct itself (64 counts + 64 pointers)
        for i in range(n):
            c = int(counts[i])
            chunks += c
            nbytes += c * (32 + 16 * i)
        per_thread.append((nbytes, chunks, thread.name))
        total_bytes += nbytes
        total_chunks += chunks
        threads_with += 1
per_thread.sort(reverse=True)
print(f"threads with a tcache: {threads_with}; chunks held: {total_chunks}; bytes held (incl. the 640-byte struct each): {total_bytes}")
for nbytes, chunks, name in per_thread[:5]:
    print(f"  {nbytes:8d} B in {chunks:4d} chunks  {name}")
by_name = {}
for nbytes, chunks, name in per_thread:
    key = (name or "?").split(" ")[0]
    b = by_name.setdefault(key, [0, 0, 0])
    b[0] += nbytes; b[1] += chunks; b[2] += 1
for key, (nbytes, chunks, count) in sorted(by_name.items(), key=lambda kv: -kv[1][0]):
    print(f"  {key}: {count} thread(s), {nbytes} B ({nbytes // count} B each), {chunks} chunks")
