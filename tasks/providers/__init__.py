"""Provider adapters: Twilio and Resend through their SDKs, console ones for development."""
