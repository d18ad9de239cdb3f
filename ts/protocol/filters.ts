// The Backtrace query protocol's filter operators (backtrace-compat.md §1.4): one list for the
// server's query engine and for the morgue client.
export const FILTER_OPERATORS = [
  'equal',
  'not-equal',
  'regular-expression',
  'inverse-regular-expression',
  'contains',
  'not-contains',
  'at-least',
  'at-most',
  'greater-than',
  'less-than',
  'is-set',
  'is-not-set',
] as const;
export type FilterOperator = (typeof FILTER_OPERATORS)[number];
