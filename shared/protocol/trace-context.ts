/** A W3C trace context header (`traceparent`): version-traceid-parentid-flags, lowercase hex. */
export const TRACEPARENT = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;
