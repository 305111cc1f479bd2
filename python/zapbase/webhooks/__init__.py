"""Outbound webhooks: Standard Webhooks signing, the address guard and an example receiver
(the deliverer is a worker loop: `zapbase.worker.deliverer`)."""
