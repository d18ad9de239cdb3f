/**
 * A query the engine refuses: malformed JSON, an unknown column or operator, a value that cannot
 * be read as the column's type. The API answers it with HTTP 400 and the message, which is a
 * sentence a morgue user can act on.
 */
export class QueryError extends Error {
  override name = 'QueryError';
}
