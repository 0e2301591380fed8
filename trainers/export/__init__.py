"""trainers/export"""
