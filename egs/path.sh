# Sourced by every egs/*/run.sh: use the project's virtualenv when tools/install.sh made one.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$repo_root/.venv/bin" ] && export PATH="$repo_root/.venv/bin:$PATH"
log() { echo "$(date '+%F %T') [$(basename "$(dirname "$0")")] $*"; }
