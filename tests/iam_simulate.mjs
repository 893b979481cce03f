// Decides IAM requests with @cloud-copilot/iam-simulate (package.json pins it), for tests/iam_simulator.py.
// One JSON array of requests per line on stdin; one JSON array of answers, in the same order, per
// line on stdout, so one process answers a whole test session.
//   request: {principal, action, resource, resourceAccount, identityPolicies: [{name, policy}],
//             resourcePolicy (or null), context: {key: value or [values]}}
//   answer:  {decision: Allowed | ExplicitlyDenied | ImplicitlyDenied, grants, denials,
//             ignoredContextKeys} or, for a request the simulator refuses as invalid, {error}
import { createInterface } from 'node:readline'
import { getDenialReasons, getGrantReasons, runSimulation } from '@cloud-copilot/iam-simulate'

async function decide(request) {
  const response = await runSimulation({
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.resourceAccount },
      contextVariables: request.context ?? {},
    },
    identityPolicies: request.identityPolicies ?? [],
    resourcePolicy: request.resourcePolicy ?? undefined,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }, {})
  if (response.resultType === 'error') {
    return { error: JSON.stringify(response.errors) }
  }
  // A request on `*` (an action that names no resource, such as cloudwatch:PutMetricData) is
  // decided per resource pattern of the policies; its overall result is IAM's decision.
  const results = response.resultType === 'single' ? [response.result] : response.results
  return {
    decision: response.overallResult,
    grants: results.flatMap((result) => getGrantReasons(result.analysis)),
    denials: results.flatMap((result) => getDenialReasons(result.analysis)),
    ignoredContextKeys: [...new Set(results.flatMap((result) => result.ignoredContextKeys ?? []))],
  }
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === '') continue
  const answers = []
  for (const request of JSON.parse(line)) answers.push(await decide(request))
  process.stdout.write(JSON.stringify(answers) + '\n')
}
