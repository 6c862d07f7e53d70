# Sourced by every egs/*/run.sh: use the project's virtualenv when tools/install.sh made one.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$repo_root/.venv/bin" ] && export PATH="$repo_root/.venv/bin:$PATH"
log() { echo "$(date '+%F %T') [$(basename "$(dirname "$0")")] $*"; }
# LM weight and word score of a decode-sweep table's best row (write_sweep puts it first, these two columns first).
best_lm_point() { awk -F'\t' 'NR == 2 {print $1, $2}' "$1"; }
