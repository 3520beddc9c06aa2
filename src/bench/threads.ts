import { readdirSync, readFileSync } from 'node:fs';

/** CPU ms of a process's main thread and of all its other threads, from /proc/PID/task/TID/stat; NaN if unreadable. */
export function threadCpuMs(pid: number): { main: number; other: number } {
  try {
    const tick = 1000 / 100; // USER_HZ is 100 on Linux
    let main = 0;
    let other = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = (Number(f[11]) + Number(f[12])) * tick;
      if (Number(tid) === pid) main += ms;
      else other += ms;
    }
    return { main, other };
  } catch {
    return { main: NaN, other: NaN };
  }
}
