#!/usr/bin/env bash
# Deploys one stage's stacks from CI (docs/cicd.md, "What each workflow does"), with the
# credentials of the stage's GitHub deploy role already in the environment:
# - one synth, then the stacks of that cloud assembly as they are;
# - every stack but `<project>-<stage>-github-deploy`: an administrator deploys that one, so no
#   workflow changes the trust or the permissions of the role it runs as;
# - through CloudFormation change sets (`--method=change-set`: CloudFormation computes each
#   change before executing it, and a failed one rolls back as a whole);
# - `--require-approval broadening`: a change that widens IAM permissions or security groups
#   needs a person's yes: with no terminal to ask, the CLI prints the change and stops before
#   executing it. An administrator deploys it from a terminal, after reading it.
set -euo pipefail
stage="${1:?usage: .github/deploy-stage.sh STAGE}"
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true
cdk=node_modules/.bin/cdk

"$cdk" synth -c stage="$stage" --quiet --output cdk.out
mapfile -t stacks < <("$cdk" list --app cdk.out | grep -v -- '-github-deploy$')
"$cdk" deploy "${stacks[@]}" --app cdk.out --method=change-set --require-approval broadening \
  --concurrency 4 --progress events
