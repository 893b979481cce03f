// Decides IAM requests with @cloud-copilot/iam-simulate (package.json pins it), for tests/iam_simulator.py.
// One JSON array of requests per line on stdin; one JSON array of answers, in the same order, per
// line on stdout, so one process answers a whole test session.
//   request: {principal, action, resource, resourceAccount, identityPolicies: [{name, policy}],
//             resourcePolicy (or null), context: {key: value or [values]}, contextAsGiven}
//   answer:  {decision: Allowed | ExplicitlyDenied | ImplicitlyDenied, grants, denials,
//             ignoredContextKeys} or, for a request the simulator refuses as invalid, {error}
import { createInterface } from 'node:readline'
import { createValidatedPolicy, validateTrustPolicy } from '@cloud-copilot/iam-policy'
import { getDenialReasons, getGrantReasons, runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

function simulation(request, resourcePolicy) {
  return {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.resourceAccount },
      contextVariables: request.context ?? {},
    },
    identityPolicies: request.identityPolicies ?? [],
    resourcePolicy,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }
}

// A web identity's AssumeRoleWithWebIdentity, decided on the role's trust policy with the token's
// claims as given. STS evaluates `<provider>:aud` and `<provider>:sub` (IAM's guide to OIDC
// federation), but IAM's reference does not list them for the action, so runSimulation drops them
// as keys such requests never carry. The trust policy is still checked as IAM checks one first.
function decideAsGiven(request) {
  const trust = createValidatedPolicy(request.resourcePolicy, validateTrustPolicy, { name: 'trust' })
  if (trust.errors.length > 0) {
    return { error: JSON.stringify(trust.errors) }
  }
  const decision = runUnsafeSimulation(simulation(request, trust), {})
  return { decision, grants: [], denials: [], ignoredContextKeys: [] }
}

async function decide(request) {
  if (request.contextAsGiven) {
    return decideAsGiven(request)
  }
  const response = await runSimulation(simulation(request, request.resourcePolicy ?? undefined), {})
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
