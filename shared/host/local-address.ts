/**
 * Where lmgate's local servers listen unless told otherwise: LM Studio's own address and port, so
 * a client set up for LM Studio reaches `npm start`'s gateway, or an agent's direct mode, unchanged.
 */
export const LOCAL_HOST = "127.0.0.1";
export const LOCAL_PORT = 1234;
