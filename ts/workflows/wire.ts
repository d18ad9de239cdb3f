/**
 * The JSON shapes the integrations endpoints answer with (ts/workflows/http.ts), shared by the
 * server that writes them (admin.ts) and the web console that reads them
 * (web/src/pages/integrations.ts). Types only, importing nothing: the console's type-check must
 * not pull in Node's types.
 */

export type IntegrationType = 'webhook' | 'slack' | 'jira';
export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface IntegrationJson {
  id: number;
  project: string;
  type: IntegrationType;
  url: string;
  triggers: string[];
  /** Seconds since the epoch. */
  created_at: number;
  jira?: { project_key: string; issue_type: string; user: string };
  deliveries?: Record<DeliveryStatus, number>;
}

export interface DeliveryJson {
  id: number;
  uuid: string;
  integration: number;
  event: string;
  fingerprint: string;
  status: DeliveryStatus;
  attempts: number;
  /** Seconds since the epoch, as are the other times. */
  created_at: number;
  next_attempt_at?: number;
  last_attempt_at?: number;
  delivered_at?: number;
  last_status?: number;
  last_error?: string;
  body?: unknown;
  attempt_log?: Array<{ at: number; status?: number; error?: string; duration_ms: number }>;
}
