"""`make chaos`: the delivery guarantee measured under the tier-1 faults of the design
document (a process or a service killed under steady load). See chaos/__main__.py."""
