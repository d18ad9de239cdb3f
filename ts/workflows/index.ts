/**
 * Workflow integrations: tell people when a crash group appears, spikes or comes back.
 * docs/workflows.md has the whole story; the pieces:
 *
 *   triggers.ts    new-group | threshold:N/WINDOW | regression, parsed and printed
 *   store.ts       integrations, group counts, threshold counters, the delivery queue and its log
 *   evaluator.ts   stored crashes → queued deliveries (after durable inserts, off the request path)
 *   dispatcher.ts  queued deliveries → signed HTTP POSTs, retried with backoff, at least once
 *   payloads.ts    generic webhook JSON, Slack message, Jira create-issue; X-Coresnap-Signature
 *   admin.ts       add / list / remove, shared by `coroner integration` and the HTTP endpoints
 *   http.ts        the admin endpoints the web console uses
 *   service.ts     evaluator + dispatcher in a running server
 */

export { addIntegration, deliveryJson, integrationJson, IntegrationError, removeIntegration, requireIntegration, validateIntegration } from './admin.js';
export type { DeliveryJson, IntegrationInput, IntegrationJson } from './admin.js';
export { DEFAULT_RETRY, Dispatcher, type RetryPolicy } from './dispatcher.js';
export { addToWindow, Evaluator, groupLink } from './evaluator.js';
export { mountIntegrations } from './http.js';
export { deliveryRequest, headline, jiraIssue, renderBody, signBody, slackMessage, verifySignature, type GroupEvent, type WebhookBody } from './payloads.js';
export { createWorkflowService, retryFromEnv, workflowServiceFor, type WorkflowOptions, type WorkflowService } from './service.js';
export { openWorkflowStore, WorkflowStoreError, type Delivery, type Integration, type IntegrationType, type WorkflowStore } from './store.js';
export { formatTrigger, parseTrigger, parseWindow, TriggerError, type Trigger } from './triggers.js';
