/** Twilio's message parsing moved to ./transports/twilio.ts; this path is kept for code that imports it from here. */
export { parseTwilioMessage, identityHint, TWILIO_MEDIA_FORMAT, type TwilioMessage, type StartMessage, type MediaMessage } from './transports/twilio.js';
