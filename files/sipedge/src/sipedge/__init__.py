"""sipedge: a multi-tenant SIP edge router (the seed's Kamailio request_route in Python)."""

__version__ = "0.1.0"
