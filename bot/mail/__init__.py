"""Email to customers: drafting, the send action and the mail-outbox worker (README: Send to the customer)."""
