//! The help text and the list of command names that usage errors quote.
//!
//! Kept apart from the parser so that the whole text an operator reads stands in one place;
//! `supergoctl --help` prints [`HELP`] as it is.

pub const HELP: &str = "\
supergoctl - control a running supergo (zero-downtime process supervisor)

Usage: supergoctl [--url ADDR] [--token T] [--json] COMMAND [ARGS]

Commands:
  status [NAME...]          one line per program: NAME STATE PID UPTIME LISTENERS
                            DRAINING, and INFO (error, last exit) when there is any
  reread                    show what changed in the config files; applies nothing
  update                    apply those changes: start added programs, drain removed
                            ones, restart changed ones; the others keep running
  start NAME...|all         start programs
  stop NAME...|all          stop programs (stop signal, then KILL after stop_timeout)
  restart [--no-wait] NAME...|all
                            zero-downtime restart: start a new process on the same
                            sockets, stop the old one once the new one is ready; a
                            failed restart leaves the old process serving. Waits for
                            the outcome (up to 300 s) unless --no-wait is given
  tail [-f] [--bytes N] NAME [stdout|stderr]
                            print the end of a program's output (stdout by default);
                            -f keeps printing new output until Ctrl-C
  upgrade [--binary PATH]   replace the running supergo by a new binary in place: the
                            same pid, every program, socket and log handed over, no
                            program restarted. PATH defaults to the binary supergo
                            was started from; a relative PATH is taken from the
                            current directory
  version                   print supergoctl's version
  help                      print this help

Options:
  --url ADDR      supergo's control address: host:port, :port (loopback) or
                  http://host:port. Default: $SUPERGO_URL, else 127.0.0.1:22106
  --token T       bearer token for the control API. Default: $SUPERGO_TOKEN
                  (prefer the variable: other users can read arguments in ps)
  --json          print supergo's JSON answers as they come, instead of text
  -h, --help      print this help
  -V, --version   print supergoctl's version

Exit status:
  0  success. `status` exits 0 even when programs are stopped, backing off or
     fatal (read the STATE column), unless a program named on the command line
     does not exist
  1  supergo answered with an error (unknown program, failed restart, ...)
  2  usage error (unknown command or option, missing program name)
  3  cannot reach supergo (not running, wrong --url, no answer in time)
  4  supergo refused the token (HTTP 401)
";

/// Every command name, for "unknown command" and "no command given".
pub const COMMANDS: &str =
    "status, reread, update, start, stop, restart, tail, upgrade, version, help";
