#!/usr/bin/env bash
# Checks template.yaml with every tool CI has: cfn-lint, `sam validate --lint`, a real `sam build` (arm64 wheels
# from the package registry, no container) with its package sizes and no package the Lambda runtime provides, an
# offline SAM -> CloudFormation translation, and checkov on both the SAM template and the translation (only the
# latter shows the generated IAM roles). Exits non-zero on any failure.
#
# Tools come from the environment: SAM, CHECKOV, CFN_LINT, PYTHON (the project's Python: aws-sam-translator and
# auditlake_local installed).
# KEEP_WORK=1 keeps the temporary build directory and reports.
set -euo pipefail

SAM=${SAM:-sam}
CHECKOV=${CHECKOV:-checkov}
CFN_LINT=${CFN_LINT:-cfn-lint}
PYTHON=${PYTHON:-python}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TEMPLATE=template.yaml

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# sam build runs pip with the function runtime's interpreter, which must be on PATH (a pyenv shim for a version
# that is installed but not selected does not count).
runs_python313() { python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; }
if ! runs_python313 && command -v pyenv >/dev/null 2>&1; then
    for dir in "$(pyenv root)"/versions/3.13*/bin; do
        if [[ -x "$dir/python3.13" ]]; then PATH="$dir:$PATH"; fi
    done
    export PATH
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/auditlake-check.XXXXXX")
if [[ "${KEEP_WORK:-0}" == 1 ]]; then
    echo "work directory kept: $work"
else
    trap 'rm -rf "$work"' EXIT
fi

section() { printf '\n==== %s ====\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

section "cfn-lint $TEMPLATE"
"$CFN_LINT" --version
"$CFN_LINT" "$TEMPLATE" || fail "cfn-lint"
echo "cfn-lint: no findings"

section "sam validate --lint"
"$SAM" --version
"$SAM" validate --lint --template-file "$TEMPLATE" || fail "sam validate --lint"

section "sam build (into $work/build)"
runs_python313 || fail "python3.13 is not on PATH; sam build needs the runtime's interpreter"
"$SAM" build --template-file "$TEMPLATE" --build-dir "$work/build" --base-dir . || fail "sam build"

section "built packages"
layer="$work/build/EngineLayer/python"
for required in auditlake/__init__.py requests/__init__.py aws_lambda_powertools/__init__.py; do
    [[ -f "$layer/$required" ]] || fail "the engine layer has no python/$required (see layers/engine/Makefile)"
done
collectors=0
for function_dir in "$work"/build/*Collector; do
    [[ -d "$function_dir" ]] || continue
    collectors=$((collectors + 1))
    compgen -G "$function_dir/*_collector.py" >/dev/null || fail "$(basename "$function_dir") has no *_collector.py"
done
(( collectors > 0 )) || fail "sam build produced no collector function"
echo "layer python/: auditlake, requests and Powertools present; $collectors collector function(s) built"

section "package sizes; nothing the Lambda runtime provides (layers/engine/runtime-provided.txt)"
# Fails if the layer or a function bundles boto3 or one of its dependencies, or a function is over 250 MiB.
"$PYTHON" -m auditlake_local.packages --build-dir "$work/build" --sizes-only || fail "deployment packages"

section "translate SAM -> CloudFormation (offline)"
"$PYTHON" scripts/template_tools.py translate "$TEMPLATE" "$work/translated.json" || fail "translation"

checkov_scan() {
    local label=$1 file=$2 report rc=0
    report="$work/checkov-$label.json"
    "$CHECKOV" --file "$file" --framework cloudformation --skip-download --output json >"$report" || rc=$?
    "$PYTHON" scripts/template_tools.py checkov-summary "$report" "$label" || fail "checkov on $label"
    (( rc == 0 )) || fail "checkov on $label exited $rc"
}

section "checkov on the SAM template"
"$CHECKOV" --version
checkov_scan sam-template "$TEMPLATE"

section "checkov on the translated CloudFormation"
checkov_scan translated "$work/translated.json"

section "all template checks passed"
