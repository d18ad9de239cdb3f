# Sourced by bin/ptrace and bin/bt (POSIX sh; no Node start-up, so the commands stay fast),
# after they set $tool (the executable's name) and $pkg (the package root, symlinks resolved).
# Finds the native executable and execs it with the caller's arguments.
# Search order (the same as findNativeTool in ts/native/index.ts):
#   $CORESNAP_NATIVE_DIR/<tool>
#   <repo>/target/release/<tool>                     (a checkout after `npm run build`)
#   <pkg>/native/<tool>                              (a package that bundles its natives)
#   node_modules/@coresnap/linux-<arch>-<libc>/<tool> (the per-platform npm package)

tried=
try_tool() {
    candidate=$1
    shift
    if [ -f "$candidate" ] && [ -x "$candidate" ]; then
        exec "$candidate" "$@"
    fi
    if [ -e "$candidate" ]; then
        tried="$tried
  $candidate: not an executable file"
    else
        tried="$tried
  $candidate: no such file"
    fi
}

if [ -n "${CORESNAP_NATIVE_DIR:-}" ]; then
    try_tool "$CORESNAP_NATIVE_DIR/$tool" "$@"
fi
try_tool "$pkg/target/release/$tool" "$@"
try_tool "$pkg/native/$tool" "$@"

case $(uname -m) in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
esac
# glibc answers GNU_LIBC_VERSION; musl's getconf (or its absence) does not.
if getconf GNU_LIBC_VERSION >/dev/null 2>&1; then libc=gnu; else libc=musl; fi
platform=linux-$arch-$libc
# The package sits under coresnap's own node_modules, or beside coresnap when npm hoisted it.
try_tool "$pkg/node_modules/@coresnap/$platform/$tool" "$@"
case $(dirname -- "$pkg") in
    */node_modules) try_tool "$(dirname -- "$pkg")/@coresnap/$platform/$tool" "$@" ;;
esac

printf '%s: cannot find the native %s executable for %s; tried:%s\n' "$tool" "$tool" "$platform" "$tried" >&2
printf 'build it with `npm run build` (in %s), or install @coresnap/%s\n' "$pkg" "$platform" >&2
exit 127
