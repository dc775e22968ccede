/** A refusal by the CA (bad input, a rule it keeps); its message is meant for the user. */
export class CaStoreError extends Error {}
