"""trainers/core"""
