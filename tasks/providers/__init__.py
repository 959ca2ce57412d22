"""Provider adapters: Twilio and Resend through their SDKs, console ones for development.

`base` is the protocol and ProviderError, `registry` picks an adapter per
channel from the settings, `timed` wraps it so every request is counted.
"""
