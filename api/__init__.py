"""Buzzer API: ad serving, tracking, analytics, settlement and dashboards."""
