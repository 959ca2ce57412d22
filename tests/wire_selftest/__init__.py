"""Self-tests of the Twilio/Resend wire fakes, driven by the real SDKs."""
